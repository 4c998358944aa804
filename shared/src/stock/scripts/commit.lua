-- commit.lua: turns a hold into a sale. Idempotent: a second commit, or a commit after a
-- release, changes nothing (the caller learns which from the reply).
--
-- With a hold spec (ARGV[2..5]) it is the commit of a reservation that is already paid
-- (CONFIRMED, an order exists): if Redis lost the hold (a failover) or released it, the units
-- are taken as sold again, from `available`, even below zero. A negative `available` is a
-- debt: the shard sold more than it had, the next units released there pay it back instead of
-- being sold, and the caller reports the oversell. A paid order always keeps its units.
--
-- KEYS[1]: fs:{S:i}:stock
-- KEYS[2]: fs:{S:i}:holds
-- KEYS[3]: fs:{S:i}:hold-times
-- ARGV[1]: reservation id
-- ARGV[2..5]: (optional) user id, quantity, hold expiry ms, now ms: take the units if needed
-- Returns one of:
--   {"COMMITTED", user, qty}
--   {"ALREADY_COMMITTED", user, qty}
--   {"RELEASED", user, qty}         the hold was released before: nothing changed (no spec)
--   {"RETAKEN", qty, available_after}  the hold was missing or released: taken as sold (spec)
--   {"PAUSED"}                      (spec) the shard is being rebuilt: its counters are about to
--                                   be rewritten from the records (which count this sale); retry
--   {"NOT_FOUND"} | {"UNKNOWN_SALE"}
if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 'UNKNOWN_SALE' }
end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
local hold = raw and decode_hold(raw)
if hold and hold.state == 'C' then
  return { 'ALREADY_COMMITTED', hold.user, hold.qty }
end
if not hold or hold.state == 'R' or hold.state == 'X' then
  if ARGV[2] == nil then
    if not hold then
      return { 'NOT_FOUND' }
    end
    return { 'RELEASED', hold.user, hold.qty }
  end
  if redis.call('HGET', KEYS[1], 'paused') == '1' then
    return { 'PAUSED' }
  end
  local qty = tonumber(ARGV[3])
  local created = ARGV[5]
  if hold then
    created = hold.created_ms
  end
  local after = redis.call('HINCRBY', KEYS[1], 'available', -qty)
  redis.call('HINCRBY', KEYS[1], 'sold', qty)
  redis.call('HSET', KEYS[2], ARGV[1], encode_hold('C', qty, ARGV[4], created, ARGV[2]))
  redis.call('ZREM', KEYS[3], ARGV[1])
  return { 'RETAKEN', qty, after }
end
redis.call('HINCRBY', KEYS[1], 'held', -hold.qty)
redis.call('HINCRBY', KEYS[1], 'sold', hold.qty)
redis.call('HSET', KEYS[2], ARGV[1],
  encode_hold('C', hold.qty, hold.expires_ms, hold.created_ms, hold.user))
redis.call('ZREM', KEYS[3], ARGV[1])
return { 'COMMITTED', hold.user, hold.qty }
