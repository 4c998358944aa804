-- rollback.lua: undoes a reservation whose durable write failed, on the buyer's home shard, in
-- one atomic step: the hold is voided (if it lives on this shard) and its units go back, the
-- buyer's claim is dropped, and the idempotency record is forgotten, so a retry with the same
-- Idempotency-Key is a new request, not a replay of an attempt that left nothing behind.
-- A hold taken on another shard (the fallback path) is voided there afterwards with
-- `release.lua ... void`; if the process dies between the two steps, that hold has no record,
-- claim or key left, and the hold reconciler releases it after its grace period.
-- Safe to run twice: everything it does is "remove if present" or a no-op on a voided hold.
--
-- KEYS[1]: fs:{S:h}:stock
-- KEYS[2]: fs:{S:h}:holds
-- KEYS[3]: fs:{S:h}:hold-times
-- KEYS[4]: fs:{S:h}:user:<uid>
-- KEYS[5]: fs:{S:h}:idem:<n>:<uid>:<key>
-- KEYS[6]: fs:{S:h}:pending-claims
-- ARGV[1]: reservation id
-- ARGV[2]: user id
-- ARGV[3]: '1' if the hold lives on this shard (void it here), '0' if it was voided elsewhere
-- Returns {"ROLLED_BACK", units_returned_here} or {"COMMITTED"} (the hold was sold: nothing
-- changed; the caller must not roll back a sale).
local id = ARGV[1]
local returned = 0
if ARGV[3] == '1' then
  local raw = redis.call('HGET', KEYS[2], id)
  if raw then
    local hold = decode_hold(raw)
    if hold.state == 'C' then
      return { 'COMMITTED' }
    end
    if hold.state == 'H' then
      redis.call('HINCRBY', KEYS[1], 'available', hold.qty)
      redis.call('HINCRBY', KEYS[1], 'held', -hold.qty)
      returned = hold.qty
    end
    if hold.state ~= 'X' then
      redis.call('HSET', KEYS[2], id,
        encode_hold('X', hold.qty, hold.expires_ms, hold.created_ms, hold.user))
    end
    redis.call('ZREM', KEYS[3], id)
  end
end
redis.call('HDEL', KEYS[4], id)
redis.call('ZREM', KEYS[6], id .. '|' .. ARGV[2])
forget_idempotency(KEYS[5], id)
return { 'ROLLED_BACK', returned }
