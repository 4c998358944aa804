-- claim.lua: reserves room under the buyer's per-user limit before a unit is taken from
-- another shard (the fallback path). Without it, one buyer's concurrent requests could hold
-- many units "in transit" at once and starve everyone else until they were refused.
-- The claim is pending until confirm.lua turns it into a reservation or unclaim.lua drops it;
-- pending claims are listed in pending-claims so a reconciler can drop those a crash left.
-- Safe to run twice: the second run finds its own pending marker and answers CLAIMED again.
--
-- KEYS[1]: fs:{S:h}:stock           stock record of the home shard h (limit, pause)
-- KEYS[2]: fs:{S:h}:user:<uid>      the buyer's claims
-- KEYS[3]: fs:{S:h}:idem:<n>:<uid>:<key>  the idempotency record
-- KEYS[4]: fs:{S:h}:pending-claims  zset "<reservation id>|<uid>" -> created_ms
-- ARGV[1]: reservation id
-- ARGV[2]: quantity
-- ARGV[3]: user id
-- ARGV[4]: now, ms since epoch
-- ARGV[5]: lifetime of the pending idempotency marker, seconds
-- Returns one of:
--   {"CLAIMED"}
--   {"IN_PROGRESS", reservation_id}  a copy of this request is between claim and confirm
--   {"DUPLICATE", reservation_id, shard, quantity, hold_expires_ms} | {"KEY_REUSED", reservation_id}
--   {"LIMIT", claimed, limit} | {"UNKNOWN_SALE"} | {"PAUSED"}
local stock = load_stock(KEYS[1])
if not stock then
  return { 'UNKNOWN_SALE' }
end
local qty = tonumber(ARGV[2])
local found = lookup_idempotency(KEYS[3], qty, ARGV[1])
if found and found.own and found.pending then
  return { 'CLAIMED' }
end
if found then
  return idempotency_reply(found)
end
if stock.paused then
  return { 'PAUSED' }
end
local refusal = limit_refusal(stock, KEYS[2], qty)
if refusal then
  return refusal
end
redis.call('HSET', KEYS[2], ARGV[1], qty)
redis.call('SET', KEYS[3], 'pending|' .. ARGV[1] .. '|' .. qty, 'EX', ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1] .. '|' .. ARGV[3])
return { 'CLAIMED' }
