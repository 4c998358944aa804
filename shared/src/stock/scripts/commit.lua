-- commit.lua: turns a hold into a sale. Idempotent: a second commit, or a commit after a
-- release, changes nothing (the caller learns which from the reply).
--
-- KEYS[1]: fs:{S:i}:stock
-- KEYS[2]: fs:{S:i}:holds
-- KEYS[3]: fs:{S:i}:hold-times
-- ARGV[1]: reservation id
-- Returns one of:
--   {"COMMITTED", user, qty}
--   {"ALREADY_COMMITTED", user, qty}
--   {"RELEASED", user, qty}         the hold was released before: nothing changed
--   {"NOT_FOUND"} | {"UNKNOWN_SALE"}
if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 'UNKNOWN_SALE' }
end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then
  return { 'NOT_FOUND' }
end
local hold = decode_hold(raw)
if hold.state == 'C' then
  return { 'ALREADY_COMMITTED', hold.user, hold.qty }
end
if hold.state == 'R' then
  return { 'RELEASED', hold.user, hold.qty }
end
redis.call('HINCRBY', KEYS[1], 'held', -hold.qty)
redis.call('HINCRBY', KEYS[1], 'sold', hold.qty)
redis.call('HSET', KEYS[2], ARGV[1],
  encode_hold('C', hold.qty, hold.expires_ms, hold.created_ms, hold.user))
redis.call('ZREM', KEYS[3], ARGV[1])
return { 'COMMITTED', hold.user, hold.qty }
