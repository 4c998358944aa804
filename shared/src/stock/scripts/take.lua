-- take.lua: the fallback step. Moves units from a non-home shard into a hold. The buyer's
-- allowance was already claimed on the home shard (claim.lua); the caller then runs
-- confirm.lua there, or on refusal releases this hold with release.lua.
-- A process that dies between take and confirm leaves a hold with no durable reservation:
-- the hold reconciler finds it through hold-times and releases it after a grace period.
--
-- KEYS[1]: fs:{S:i}:stock       stock record of shard i
-- KEYS[2]: fs:{S:i}:holds       holds of shard i
-- KEYS[3]: fs:{S:i}:hold-times  active holds of shard i by creation time
-- ARGV[1]: reservation id
-- ARGV[2]: user id
-- ARGV[3]: quantity (>= 1)
-- ARGV[4]: hold expiry, ms since epoch
-- ARGV[5]: now, ms since epoch
-- ARGV[6]: shard count the caller assumes
-- ARGV[7]: '1' to check the fence against lost writes (common.lua), '0' not to
-- Returns one of:
--   {"TAKEN", available_after}   (also when this reservation id already holds here: a second
--                                 run with the same arguments changes nothing)
--   {"EMPTY", available}
--   {"UNKNOWN_SALE"} | {"PAUSED"} | {"FENCED"} | {"LAYOUT_MISMATCH", shards}
local stock = load_stock(KEYS[1])
if not stock then
  return { 'UNKNOWN_SALE' }
end
if stock.shards ~= tonumber(ARGV[6]) then
  return { 'LAYOUT_MISMATCH', stock.shards }
end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return { 'TAKEN', stock.available }
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
if stock.available < qty then
  return { 'EMPTY', stock.available }
end
local after = create_hold(KEYS[1], stock, KEYS[2], KEYS[3], ARGV[1], ARGV[2], qty, ARGV[4], ARGV[5])
return { 'TAKEN', after }
