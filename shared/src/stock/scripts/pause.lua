-- pause.lua: stops selling on one shard while its stock is rebuilt. reserve.lua, claim.lua and
-- take.lua answer PAUSED (HTTP 503 with Retry-After). A shard whose record is gone (Redis lost
-- its data) gets a paused placeholder: it answers PAUSED too, and has no `initial`, so it still
-- reads as "not set up" to levels() and to the rebuild detection until the rebuild writes it.
--
-- KEYS[1]: fs:{S:i}:stock
-- ARGV[1]: shard count of the sale
-- ARGV[2]: per-user limit
-- ARGV[3]: now, ms since epoch (paused_at: a pause left by a crashed rebuild is found by age)
-- Returns {"PAUSED"} (the shard had its record) or {"PLACEHOLDER"}
-- Safe to run twice with the same arguments (it only sets fields to the same values).
if redis.call('HEXISTS', KEYS[1], 'initial') == 1 then
  redis.call('HSET', KEYS[1], 'paused', 1, 'paused_at', ARGV[3])
  return { 'PAUSED' }
end
redis.call('HSET', KEYS[1], 'available', 0, 'paused', 1, 'paused_at', ARGV[3],
  'shards', ARGV[1], 'limit', ARGV[2], 'placeholder', 1)
return { 'PLACEHOLDER' }
