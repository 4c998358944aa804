-- release.lua: returns a held unit to its shard. Idempotent: a second release, or a release
-- after a commit, changes nothing. The buyer's claim lives on the home shard's slot; the
-- caller removes it afterwards with unclaim.lua (also idempotent) using the user id returned here.
--
-- KEYS[1]: fs:{S:i}:stock       stock record of the shard that holds the units
-- KEYS[2]: fs:{S:i}:holds
-- KEYS[3]: fs:{S:i}:hold-times
-- ARGV[1]: reservation id
-- ARGV[2]: (optional) 'void': mark the hold X instead of R. A rollback of a reserve whose
--          durable write failed voids its hold, which tells a retry of the same Idempotency-Key
--          that the attempt left nothing behind (see rollback.lua).
-- Returns one of:
--   {"RELEASED", user, qty, available_after}
--   {"ALREADY_RELEASED", user, qty}
--   {"COMMITTED", user, qty}        the hold was sold: nothing changed
--   {"NOT_FOUND"}                   no such hold on this shard
--   {"UNKNOWN_SALE"}
if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 'UNKNOWN_SALE' }
end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then
  return { 'NOT_FOUND' }
end
local hold = decode_hold(raw)
if hold.state == 'R' or hold.state == 'X' then
  return { 'ALREADY_RELEASED', hold.user, hold.qty }
end
if hold.state == 'C' then
  return { 'COMMITTED', hold.user, hold.qty }
end
local after = redis.call('HINCRBY', KEYS[1], 'available', hold.qty)
redis.call('HINCRBY', KEYS[1], 'held', -hold.qty)
local mark = 'R'
if ARGV[2] == 'void' then
  mark = 'X'
end
redis.call('HSET', KEYS[2], ARGV[1],
  encode_hold(mark, hold.qty, hold.expires_ms, hold.created_ms, hold.user))
redis.call('ZREM', KEYS[3], ARGV[1])
return { 'RELEASED', hold.user, hold.qty, after }
