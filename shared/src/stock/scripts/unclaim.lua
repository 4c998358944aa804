-- unclaim.lua: frees the buyer's allowance held by a reservation: after a release, or when a
-- pending claim found no unit. Idempotent.
--
-- KEYS[1]: fs:{S:h}:user:<uid>
-- KEYS[2]: fs:{S:h}:pending-claims
-- KEYS[3]: (optional) fs:{S:h}:idem:<n>:<uid>:<key>, dropped if it is this claim's pending marker
-- ARGV[1]: reservation id
-- ARGV[2]: user id
-- Returns 1 if a claim was removed, 0 if there was none.
redis.call('ZREM', KEYS[2], ARGV[1] .. '|' .. ARGV[2])
if KEYS[3] then
  local raw = redis.call('GET', KEYS[3])
  if raw and string.sub(raw, 1, 8 + #ARGV[1]) == 'pending|' .. ARGV[1] then
    redis.call('DEL', KEYS[3])
  end
end
return redis.call('HDEL', KEYS[1], ARGV[1])
