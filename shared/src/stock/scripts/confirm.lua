-- confirm.lua: turns a pending claim into a reservation once take.lua has created the hold on
-- shard j, and replaces the pending idempotency marker with the final outcome.
-- Safe to run twice: the second run finds its own final record and answers RESERVED again.
--
-- KEYS[1]: fs:{S:h}:user:<uid>
-- KEYS[2]: fs:{S:h}:idem:<n>:<uid>:<key>
-- KEYS[3]: fs:{S:h}:pending-claims
-- ARGV[1]: reservation id
-- ARGV[2]: quantity
-- ARGV[3]: shard j that holds the units
-- ARGV[4]: idempotency record lifetime, seconds
-- ARGV[5]: user id
-- ARGV[6]: hold expiry, ms since epoch
-- Returns one of:
--   {"RESERVED", shard}
--   {"DUPLICATE", ...} | {"KEY_REUSED", ...} | {"IN_PROGRESS", ...}
--                                 our pending marker expired and another copy got ahead
--   {"CLAIM_LOST"}                                       a reconciler dropped the claim as stale
-- On anything but RESERVED the caller releases the hold on j and runs unclaim.lua.
local qty = tonumber(ARGV[2])
local found = lookup_idempotency(KEYS[2], qty, ARGV[1])
if found and found.own and not found.pending then
  return { 'RESERVED', found.shard }
end
if found and not (found.pending and found.own) then
  return idempotency_reply(found)
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return { 'CLAIM_LOST' }
end
local shard = tonumber(ARGV[3])
remember(KEYS[2], KEYS[1], ARGV[1], shard, qty, ARGV[6], tonumber(ARGV[4]))
redis.call('ZREM', KEYS[3], ARGV[1] .. '|' .. ARGV[5])
return { 'RESERVED', shard }
