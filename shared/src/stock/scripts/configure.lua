-- configure.lua: changes a running sale's per-user limit on one shard (admin update).
--
-- KEYS[1]: fs:{S:i}:stock
-- ARGV[1]: per-user limit (>= 1)
-- Returns {"OK"} or {"UNKNOWN_SALE"}
if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 'UNKNOWN_SALE' }
end
redis.call('HSET', KEYS[1], 'limit', ARGV[1])
return { 'OK' }
