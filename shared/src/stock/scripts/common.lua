-- common.lua: helpers prepended to every stock script at build time (see stock/redis/scripts.rs).
-- It touches no keys by itself.
--
-- Key layout: every key of one shard shares the hash tag {<sale>:<shard>}, so a script that
-- works on one shard touches exactly one Redis Cluster slot, while different shards of the same
-- sale hash to different slots (and so to different nodes).
--
--   fs:{S:i}:stock        hash: initial, available, held, sold, shards, limit, paused,
--                               paused_at (ms, while a rebuild runs), placeholder (1 on a
--                               paused shard whose record was lost: no `initial` until rebuilt),
--                               writer (run id of the Redis process the record was created or
--                               last rebuilt on), fenced (1 while paused by the fence below)
--   fs:{S:i}:holds        hash: reservation id -> "state|qty|expires_ms|created_ms|user"
--                               state H (held), C (committed), R (released), X (voided: the
--                               reserve's durable write failed and it was rolled back; the key
--                               that made it is free again)
--   fs:{S:i}:hold-times   zset: reservation id -> created_ms, active holds only (for reconcilers)
--   fs:{S:i}:user:<uid>   hash: reservation id -> qty, claims of users whose home shard is i
--   fs:{S:i}:idem:<n>:<uid>:<key>  string "reservation_id|shard|qty|hold_expires_ms", expires
--   fs:{S:i}:pending-claims  zset: "<reservation id>|<uid>" -> created_ms, claims made for the
--                               fallback path and not yet confirmed
--   fs:{S:0}:rebuild-lock string: the token of the stock rebuild running for the sale

-- Reads the stock record; returns nil when the sale has no record on this shard (never set up,
-- or Redis lost its data: the caller must not treat that as zero stock or as fresh stock).
local function load_stock(stock_key)
  local v = redis.call('HMGET', stock_key, 'available', 'shards', 'limit', 'paused', 'writer', 'held')
  if v[1] == false then
    return nil
  end
  return {
    available = tonumber(v[1]),
    shards = tonumber(v[2]),
    limit = tonumber(v[3]),
    paused = v[4] == '1',
    writer = v[5],
    held = tonumber(v[6]) or 0,
  }
end

-- The run id of the Redis process running this script. It changes when another process serves
-- the data: a promoted replica after a failover, or a restart that reloaded a snapshot.
local function current_run_id()
  return string.match(redis.call('INFO', 'server'), '\nrun_id:([^\r\n]+)')
end

-- Whether this script runs on the Redis process whose run id is `writer` (as current_run_id()
-- read it): a plain search for the whole line, which the fence runs on every selling step, so
-- it skips the pattern scan (INFO itself stays most of the fence's cost, BENCHMARKS.md).
local function runs_on(writer)
  -- HMGET answers false for a missing field: a record without a writer is verified by no one.
  if not writer then
    return false
  end
  local info = redis.call('INFO', 'server')
  local _, last = string.find(info, '\nrun_id:' .. writer, 1, true)
  local after = last and string.sub(info, last + 1, last + 1)
  return after == '\r' or after == '\n'
end

-- The fence against lost writes. Replication is asynchronous, so the process that serves a shard
-- after a failover may miss the last holds the old primary acknowledged: their units would read
-- as available and be sold twice. A shard's record names its `writer`, the process it was created
-- or last rebuilt on; a script that takes units first checks that it runs there. If not, it
-- pauses the shard (`fenced`), and nothing sells from it until a rebuild from the durable records
-- has re-verified it and written the new writer. `check` is the caller's switch ('1' on; off only
-- where the store cannot lose acknowledged writes or INFO is not available).
-- Scripts check it before every answer read from the shard's data, refusals too: on a process
-- that may have lost writes, "sold out", "limit reached" or "no units" come from stale data (a
-- paid reservation failed as stock lost, a buyer past the limit through the fallback, a sold-out
-- shard never repaired), and the trip is what asks for the rebuild.
-- Returns nil to go on, or the reply to send ({"FENCED"} the first time, then PAUSED).
local function fence(stock_key, stock, check, now_ms)
  if check ~= '1' or runs_on(stock.writer) then
    return nil
  end
  redis.call('HSET', stock_key, 'paused', 1, 'paused_at', now_ms, 'fenced', 1)
  return { 'FENCED' }
end

local function encode_hold(state, qty, expires_ms, created_ms, user)
  return state .. '|' .. qty .. '|' .. expires_ms .. '|' .. created_ms .. '|' .. user
end

-- The user id comes last because it may itself contain '|'.
local function decode_hold(raw)
  local state, qty, expires_ms, created_ms, user =
    string.match(raw, '^(%a)|(%d+)|(%-?%d+)|(%-?%d+)|(.*)$')
  return { state = state, qty = tonumber(qty), expires_ms = expires_ms,
           created_ms = created_ms, user = user }
end

-- Takes qty units from this shard into a hold. The caller has checked availability; `stock`
-- is what load_stock read in this same script (nothing else runs meanwhile), so both counters
-- are written by one HSET instead of two HINCRBYs.
local function create_hold(stock_key, stock, holds_key, times_key, id, user, qty, expires_ms, now_ms)
  local after = stock.available - qty
  -- As integer text: some Redis versions (7.2.0-7.2.4) send a Lua number such as 100000000 as
  -- "1e+8", which HINCRBY and the Rust side would then refuse as not an integer.
  redis.call('HSET', stock_key, 'available', string.format('%d', after),
    'held', string.format('%d', stock.held + qty))
  redis.call('HSET', holds_key, id, encode_hold('H', qty, expires_ms, now_ms, user))
  redis.call('ZADD', times_key, now_ms, id)
  return after
end

-- Sum of the units a user has claimed (held or bought) in this sale.
local function claimed_by(user_key)
  local total = 0
  for _, q in ipairs(redis.call('HVALS', user_key)) do
    total = total + tonumber(q)
  end
  return total
end

-- Idempotency: nil when the key is new, else the stored outcome and whether the request matches.
-- `for_id` is the reservation id of the request asking: a record that names it is this very
-- request run a second time (a client re-sent the script after a lost answer), `own` below.
-- A record is final ("<id>|<shard>|<qty>|<expires_ms>") or, while a fallback reservation is under way,
-- pending ("pending|<id>|<qty>", short-lived so a crashed attempt does not block retries).
local function lookup_idempotency(idem_key, qty, for_id)
  local raw = redis.call('GET', idem_key)
  if not raw then
    return nil
  end
  local pending_id, pending_qty = string.match(raw, '^pending|([^|]+)|(%d+)$')
  if pending_id then
    return { pending = true, id = pending_id, qty = tonumber(pending_qty),
             same_request = tonumber(pending_qty) == qty, own = pending_id == for_id }
  end
  local id, shard, stored_qty, expires_ms = string.match(raw, '^([^|]+)|(%d+)|(%d+)|(%-?%d+)$')
  return { id = id, shard = tonumber(shard), qty = tonumber(stored_qty), expires_ms = expires_ms,
           same_request = tonumber(stored_qty) == qty, own = id == for_id }
end

-- Drops an idempotency record (finished or pending) if, and only if, it names reservation `id`.
local function forget_idempotency(idem_key, id)
  local raw = redis.call('GET', idem_key)
  if raw and (string.sub(raw, 1, #id + 1) == id .. '|'
      or string.sub(raw, 1, #id + 9) == 'pending|' .. id .. '|') then
    redis.call('DEL', idem_key)
  end
end

-- The state letter of a hold on this shard, or nil.
local function hold_state(holds_key, id)
  local raw = redis.call('HGET', holds_key, id)
  if not raw then
    return nil
  end
  return string.sub(raw, 1, 1)
end

local function idempotency_reply(found)
  if not found.same_request then
    return { 'KEY_REUSED', found.id }
  end
  if found.pending then
    return { 'IN_PROGRESS', found.id }
  end
  return { 'DUPLICATE', found.id, found.shard, found.qty, found.expires_ms }
end

-- The per-user limit: the refusal to send, or nil when `qty` more units fit.
local function limit_refusal(stock, user_key, qty)
  local claimed = claimed_by(user_key)
  if claimed + qty > stock.limit then
    return { 'LIMIT', claimed, stock.limit }
  end
  return nil
end

local function remember(idem_key, user_key, id, shard, qty, expires_ms, ttl_s)
  redis.call('HSET', user_key, id, qty)
  redis.call('SET', idem_key, id .. '|' .. shard .. '|' .. qty .. '|' .. expires_ms, 'EX', ttl_s)
end
