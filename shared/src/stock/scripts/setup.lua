-- setup.lua: creates one shard's stock record. Never overwrites: re-running a setup after a
-- partial failure completes the missing shards and leaves existing ones alone. The record
-- names this Redis process as its writer (the fence in common.lua).
--
-- KEYS[1]: fs:{S:i}:stock
-- ARGV[1]: units for this shard (>= 0)
-- ARGV[2]: shard count of the sale
-- ARGV[3]: per-user limit (>= 1)
-- Returns {"CREATED"} or {"EXISTS", initial, shards, limit}
if redis.call('EXISTS', KEYS[1]) == 1 then
  local v = redis.call('HMGET', KEYS[1], 'initial', 'shards', 'limit')
  return { 'EXISTS', tonumber(v[1]), tonumber(v[2]), tonumber(v[3]) }
end
redis.call('HSET', KEYS[1],
  'initial', ARGV[1], 'available', ARGV[1], 'held', 0, 'sold', 0,
  'shards', ARGV[2], 'limit', ARGV[3], 'paused', 0, 'writer', current_run_id())
return { 'CREATED' }
