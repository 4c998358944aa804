-- redeem.lua: redeems a solved challenge (its nonce) for one request, and grants the buyer's
-- pass on the sale in the same step. Both keys carry the buyer's hash tag (one slot).
-- KEYS[1] the spent-nonce key; KEYS[2] the buyer's pass key for the sale.
-- ARGV[1] request id; ARGV[2] ms to remember the nonce; ARGV[3] ms the pass lasts.
-- Returns 1: redeemed now (the first time, or the same request again: a re-sent call) and the
-- pass granted; 2: redeemed before by another request and the pass stands (a double submit or
-- the retry of a call whose answer was lost: admitted, no new pass); 0: redeemed before and no
-- pass stands (a replay).
-- Safe to run twice: the same request gets 1 again and leaves the same keys.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
    or redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  return 1
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
return 0
