-- top_up.lua: grows one shard's stock to a target during a sale (an admin raised the sale's
-- total). `initial` and `available` grow together, so initial = available + held + sold keeps
-- holding. The argument is the shard's target, not a delta: running it twice, or again after a
-- half-done change, converges on the same state (a shard at or above its target is left alone;
-- stock never shrinks here).
--
-- KEYS[1]: fs:{S:i}:stock
-- ARGV[1]: the shard's target `initial` (>= 0)
-- Returns {"OK", units_added, available_after} or {"UNKNOWN_SALE"}
if redis.call('HEXISTS', KEYS[1], 'initial') == 0 then
  return { 'UNKNOWN_SALE' }
end
local initial = tonumber(redis.call('HGET', KEYS[1], 'initial'))
local add = tonumber(ARGV[1]) - initial
if add <= 0 then
  return { 'OK', 0, tonumber(redis.call('HGET', KEYS[1], 'available')) }
end
redis.call('HINCRBY', KEYS[1], 'initial', add)
return { 'OK', add, redis.call('HINCRBY', KEYS[1], 'available', add) }
