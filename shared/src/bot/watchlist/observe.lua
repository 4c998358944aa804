-- observe.lua: counts one request for one subject (a buyer or an address) and reads what the
-- bot defence needs about that subject, in one step on the subject's slot.
-- KEYS[1] block (string: the reason; PX = what is left of the block)
-- KEYS[2] this minute's count (HyperLogLog of request ids: a re-sent call counts once)
-- KEYS[3] the previous minute's count
-- KEYS[4] pass (string; buyers only: for an address the key never exists)
-- ARGV[1] request id
-- Returns {block ms left (-2: none), reason or false, this minute, previous minute, pass ms left (-2: none)}.
-- Safe to run twice: PFADD of the same id changes nothing, EXPIRE sets the same bound.
redis.call('PFADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], 120)
local block_left = redis.call('PTTL', KEYS[1])
local reason = false
if block_left > 0 then reason = redis.call('GET', KEYS[1]) end
return {block_left, reason, redis.call('PFCOUNT', KEYS[2]), redis.call('PFCOUNT', KEYS[3]),
  redis.call('PTTL', KEYS[4])}
