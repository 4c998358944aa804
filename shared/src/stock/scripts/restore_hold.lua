-- restore_hold.lua: re-creates the hold of a durable PENDING / PAYMENT_PROCESSING reservation
-- that Redis no longer holds (a failover lost the write, or a release ran after a durable write
-- that only looked failed). Takes the units from `available` again. Idempotent: an active hold
-- is left alone. The buyer's claim lives on the home shard (another slot); the caller restores
-- it afterwards with restore_claims.lua (also idempotent).
--
-- KEYS[1]: fs:{S:i}:stock
-- KEYS[2]: fs:{S:i}:holds
-- KEYS[3]: fs:{S:i}:hold-times
-- ARGV[1]: reservation id
-- ARGV[2]: user id
-- ARGV[3]: quantity (>= 1)
-- ARGV[4]: hold expiry, ms since epoch
-- ARGV[5]: now, ms since epoch
-- ARGV[6]: "1" to take the units even if fewer are available (available goes negative: the
--          shard owes units, and the next ones released pay the debt instead of being resold)
-- ARGV[7]: '1' to check the fence against lost writes (common.lua), '0' not to
-- Returns one of:
--   {"RESTORED", available_after}
--   {"HELD"}                 the hold is active already: nothing changed
--   {"COMMITTED"}            the hold was sold: nothing changed
--   {"NO_UNITS", available}  nothing changed
--   {"PAUSED"} | {"FENCED"} | {"UNKNOWN_SALE"}
-- Safe to run twice: the second run finds the hold active and answers HELD.
local stock = load_stock(KEYS[1])
if not stock then
  return { 'UNKNOWN_SALE' }
end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if raw then
  local hold = decode_hold(raw)
  if hold.state == 'H' then
    return { 'HELD' }
  end
  if hold.state == 'C' then
    return { 'COMMITTED' }
  end
end
if stock.paused then
  return { 'PAUSED' }
end
-- The fence comes before every answer read from this shard's data (common.lua says why).
local fenced = fence(KEYS[1], stock, ARGV[7], ARGV[5])
if fenced then
  return fenced
end
local qty = tonumber(ARGV[3])
if stock.available < qty and ARGV[6] ~= '1' then
  return { 'NO_UNITS', stock.available }
end
local after = create_hold(KEYS[1], stock, KEYS[2], KEYS[3], ARGV[1], ARGV[2], qty, ARGV[4], ARGV[5])
return { 'RESTORED', after }
