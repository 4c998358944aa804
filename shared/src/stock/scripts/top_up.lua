-- top_up.lua: adds units to one shard during a sale (initial and available grow together,
-- so initial = available + held + sold keeps holding).
--
-- KEYS[1]: fs:{S:i}:stock
-- ARGV[1]: units to add (>= 0)
-- Returns {"OK", available_after} or {"UNKNOWN_SALE"}
if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 'UNKNOWN_SALE' }
end
redis.call('HINCRBY', KEYS[1], 'initial', ARGV[1])
return { 'OK', redis.call('HINCRBY', KEYS[1], 'available', ARGV[1]) }
