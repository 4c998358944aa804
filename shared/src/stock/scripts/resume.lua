-- resume.lua: reopens one rebuilt shard for selling.
--
-- KEYS[1]: fs:{S:i}:stock
-- Returns {"RESUMED"} or {"NOT_REBUILT"} (no complete record: the shard must be rebuilt first)
if redis.call('HEXISTS', KEYS[1], 'initial') == 0 or redis.call('HEXISTS', KEYS[1], 'placeholder') == 1 then
  return { 'NOT_REBUILT' }
end
redis.call('HSET', KEYS[1], 'paused', 0)
redis.call('HDEL', KEYS[1], 'paused_at')
return { 'RESUMED' }
