-- restore_claims.lua: records buyers' claims (reservation id -> quantity) on their home shard,
-- after a hold was restored or a shard rebuilt. Idempotent (HSET of the same value).
--
-- KEYS[1..n]: fs:{S:h}:user:<uid>   the claims of n buyers whose home shard is h (one slot)
-- ARGV[2k-1], ARGV[2k]: reservation id and quantity for KEYS[k]
-- Returns how many claims were new.
local added = 0
for k, key in ipairs(KEYS) do
  added = added + redis.call('HSET', key, ARGV[2 * k - 1], ARGV[2 * k])
end
return added
