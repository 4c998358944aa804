-- reserve.lua: one atomic reservation attempt on the buyer's home shard.
-- Idempotency, the per-user limit and the decrement happen in one step. If the home shard
-- cannot serve the request, nothing is written and the caller falls back to other shards
-- with claim.lua (here), take.lua (there) and confirm.lua (here).
-- Safe to run twice with the same arguments (a client that re-sends it after a lost answer):
-- the second run finds its own idempotency record and answers RESERVED again, changing nothing.
--
-- KEYS[1]: fs:{S:h}:stock       stock record of the home shard h
-- KEYS[2]: fs:{S:h}:holds       holds of shard h
-- KEYS[3]: fs:{S:h}:hold-times  active holds of shard h by creation time
-- KEYS[4]: fs:{S:h}:user:<uid>  the buyer's claims (user's home shard is h)
-- KEYS[5]: fs:{S:h}:idem:<n>:<uid>:<key>  the idempotency record
-- ARGV[1]: reservation id to use if a hold is created
-- ARGV[2]: user id
-- ARGV[3]: quantity (>= 1)
-- ARGV[4]: hold expiry, ms since epoch
-- ARGV[5]: now, ms since epoch
-- ARGV[6]: shard count the caller assumes
-- ARGV[7]: home shard index h
-- ARGV[8]: idempotency record lifetime, seconds
-- ARGV[9]: '1' to check the fence against lost writes (common.lua), '0' not to
-- Returns one of:
--   {"RESERVED", shard, available_after}
--   {"DUPLICATE", reservation_id, shard, quantity, hold_expires_ms}
--                                                   same key, same request: nothing changed
--   {"KEY_REUSED", reservation_id}                  same key, different request
--   {"IN_PROGRESS", reservation_id}                 a copy of this request is still running
--   {"LIMIT", claimed, limit}
--   {"HOME_EMPTY", available}                       nothing changed; try the other shards
--   {"UNKNOWN_SALE"}                                no stock record (not set up or data lost)
--   {"PAUSED"}                                      selling is paused (stock rebuild)
--   {"FENCED"}                                      this process may have lost writes: the
--                                                   shard is paused until it is rebuilt
--   {"LAYOUT_MISMATCH", shards}                     the sale has another shard count
local stock = load_stock(KEYS[1])
if not stock then
  return { 'UNKNOWN_SALE' }
end
if stock.shards ~= tonumber(ARGV[6]) then
  return { 'LAYOUT_MISMATCH', stock.shards }
end
local id = ARGV[1]
local qty = tonumber(ARGV[3])
local found = lookup_idempotency(KEYS[5], qty, id)
if found and found.own and not found.pending then
  return { 'RESERVED', found.shard, stock.available }
end
if found then
  return idempotency_reply(found)
end
if stock.paused then
  return { 'PAUSED' }
end
-- The fence comes before every answer read from this shard's data (common.lua says why).
local fenced = fence(KEYS[1], stock, ARGV[9], ARGV[5])
if fenced then
  return fenced
end
local refusal = limit_refusal(stock, KEYS[4], qty)
if refusal then
  return refusal
end
if stock.available < qty then
  return { 'HOME_EMPTY', stock.available }
end
local shard = tonumber(ARGV[7])
local after = create_hold(KEYS[1], stock, KEYS[2], KEYS[3], id, ARGV[2], qty, ARGV[4], ARGV[5])
remember(KEYS[5], KEYS[4], id, shard, qty, ARGV[4], tonumber(ARGV[8]))
return { 'RESERVED', shard, after }
