-- The waiting room of one sale, in one atomic step (see waiting_room/mod.rs and schedule.rs,
-- whose arithmetic this mirrors line by line).
--
-- KEYS (one hash slot, fs:{wr:<sale>}):
--   1 state   HASH  frozen (pre-queue size at the opening), origin (the opening, ms),
--                   pre_step (ms between pre-queue places, fixed at the opening), tail,
--                   tail_off (the tail's admission, ms after origin, fractional: at 10,000
--                   places a second a place is 0.1 ms, which an absolute time in ms cannot
--                   add up exactly),
--                   adm:<minute> (places admitted in that minute), shw:<minute> (of them, came)
--   2 pre     ZSET  the pre-queue: buyer -> rank key (HMAC of the buyer under the sale's seed)
--   3 places  HASH  buyer -> "<position>:<admit_at ms>"
--   4 shown   HASH  position -> 1, for each place that came to reserve
--   5 in      SET   buyers let straight in during the current second (threshold mode)
-- ARGV: 1 op (join | restore | state | straight_in | show), 2 now (ms), 3 drain per second,
--   4 max boost (%), 5 no-show sample, 6 no-show grace (ms), 7 opens_at (ms),
--   8 buyer (show: the position), 9 max queue (restore: the ticket's position),
--   10 rank key (show, restore: the place's admit_at ms), 11 keep until (ms),
--   12 straight-in per second, 13 admission window (ms)
-- Replies:
--   join:        {'placed', position, admit_at, rejoined} | {'pre', size, 0, rejoined}
--                | {'full', waiting, 0, 0}
--   restore:     {'placed', position, admit_at, 1} (the buyer's place: the stored one if any,
--                else the ticket's, and the tail raised to it)
--   state:       {'state', tail, serving, pre_queue, rate x 1000}
--   straight_in: {'in'} | {'queue'}
--   show:        {'shown', 1 if new else 0}
-- Run twice, join and restore answer the same place (the second run finds the first one's),
-- show counts once, straight_in counts a buyer once a second; state only reads.

local op = ARGV[1]
local now = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local max_boost = tonumber(ARGV[4])
local min_sample = tonumber(ARGV[5])
local grace = tonumber(ARGV[6])
local opens_at = tonumber(ARGV[7])
local keep_until = ARGV[11]

local MINUTE = 60000
local base_step = 1000 / math.max(rate, 1)

-- Fractional ms are kept to six decimals, stored and computed alike (memory.rs rounds the
-- same way), so a value read back is the value that was used.
local function r6(x) return tonumber(string.format('%.6f', x)) end

local function keep()
  for i = 1, 4 do
    if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('PEXPIREAT', KEYS[i], keep_until) end
  end
end

-- Places admitted by t: all of them once the tail's time has come, else the tail minus the
-- places still ahead at the current step (the tolerance keeps 9999.0000001 steps from
-- counting as 10,000).
local function serving_at(tail, tail_at, step, t)
  if tail_at <= t then return tail end
  local ahead = math.ceil((tail_at - t) / step - 1e-6)
  if ahead >= tail then return 0 end
  return tail - ahead
end

-- The queue now: {frozen?, pre-queue size, tail, tail_off, origin, pre_step}. Before the first
-- join after the opening freezes the pre-queue, it is computed as if frozen now (nothing is
-- written).
local function current()
  local s = redis.call('HMGET', KEYS[1], 'frozen', 'tail', 'tail_off', 'origin', 'pre_step')
  if s[1] then
    return true, tonumber(s[1]), tonumber(s[2]), tonumber(s[3]), tonumber(s[4]), tonumber(s[5])
  end
  local size = redis.call('ZCARD', KEYS[2])
  return false, size, size, r6((size - 1) * base_step), opens_at, r6(base_step)
end

-- Freezes the pre-queue at the opening (once): its size, the opening, its step; and counts
-- its places per minute of admission for the no-show measure.
local function freeze()
  local frozen, pre, tail, tail_off, origin, pre_step = current()
  if frozen then return pre, tail, tail_off, origin, pre_step end
  redis.call('HSET', KEYS[1], 'frozen', pre, 'origin', string.format('%d', origin),
    'pre_step', string.format('%.6f', pre_step), 'tail', tail,
    'tail_off', string.format('%.6f', tail_off))
  local rank = 0
  while rank < pre do
    local m = math.floor((origin + math.ceil(rank * pre_step)) / MINUTE)
    local next_rank = math.min(pre, math.ceil(((m + 1) * MINUTE - origin) / pre_step))
    if next_rank <= rank then next_rank = rank + 1 end
    redis.call('HINCRBY', KEYS[1], 'adm:' .. m, next_rank - rank)
    rank = next_rank
  end
  return pre, tail, tail_off, origin, pre_step
end

-- The step for places given out now: the base step, shortened by the no-show boost, measured
-- on the last whole minute that ended at least the grace period ago.
local function boosted_step()
  if max_boost == 0 then return base_step, 1 end
  local m = math.floor((now - grace) / MINUTE) - 1
  local c = redis.call('HMGET', KEYS[1], 'adm:' .. m, 'shw:' .. m)
  local admitted, showed = tonumber(c[1]) or 0, tonumber(c[2]) or 0
  if admitted < min_sample or admitted == 0 then return base_step, 1 end
  local boost = math.min(math.max(admitted / math.max(showed, 1), 1), 1 + max_boost / 100)
  -- The same expression as schedule.rs's step_ms, so both stores compute the same bits.
  return 1000 / (math.max(rate, 1) * boost), boost
end

if op == 'state' then
  if now < opens_at and not redis.call('HGET', KEYS[1], 'frozen') then
    return {'state', 0, 0, redis.call('ZCARD', KEYS[2]), rate * 1000}
  end
  local _, pre, tail, tail_off, origin = current()
  local step, boost = boosted_step()
  return {'state', tail, serving_at(tail, tail_off, step, now - origin), pre, math.floor(rate * boost * 1000 + 0.5)}
end

if op == 'straight_in' then
  -- Counted per buyer, not per request: one account sending many cannot use up the second.
  local per_sec, buyer = tonumber(ARGV[12]), ARGV[8]
  if now < opens_at then return {'queue'} end
  local _, _, tail, tail_off, origin = current()
  local step = boosted_step()
  if serving_at(tail, tail_off, step, now - origin) < tail then return {'queue'} end
  if redis.call('SISMEMBER', KEYS[5], buyer) == 1 then return {'in'} end
  if redis.call('SCARD', KEYS[5]) >= per_sec then return {'queue'} end
  redis.call('SADD', KEYS[5], buyer)
  redis.call('PEXPIRE', KEYS[5], 2000)
  return {'in'}
end

if op == 'show' then
  local position, admit_at = ARGV[8], tonumber(ARGV[10])
  if redis.call('HSETNX', KEYS[4], position, 1) == 0 then return {'shown', 0} end
  redis.call('HINCRBY', KEYS[1], 'shw:' .. math.floor(admit_at / MINUTE), 1)
  keep()
  return {'shown', 1}
end

if op == 'restore' then
  -- A buyer whose place Redis lost brings its ticket back: the place is the ticket's, and the
  -- tail is raised to it, so people who join now go behind it.
  local buyer, pos, at = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
  local placed = redis.call('HGET', KEYS[3], buyer)
  if placed then
    local p, a = string.match(placed, '^(%d+):(%-?%d+)$')
    return {'placed', tonumber(p), tonumber(a), 1}
  end
  local _, tail, tail_off, origin = freeze()
  if pos > tail then redis.call('HSET', KEYS[1], 'tail', pos) end
  if at - origin > tail_off then
    redis.call('HSET', KEYS[1], 'tail_off', string.format('%.6f', at - origin))
  end
  redis.call('HSET', KEYS[3], buyer, pos .. ':' .. at)
  keep()
  return {'placed', pos, at, 1}
end

if op ~= 'join' then return redis.error_reply('unknown op ' .. tostring(op)) end

local buyer = ARGV[8]
local max_queue = tonumber(ARGV[9])
local rank_key = tonumber(ARGV[10])

-- An existing place is the answer, until its admission window is over: then the buyer gets a
-- new place at the back (a second chance, behind everyone who came meanwhile).
local placed = redis.call('HGET', KEYS[3], buyer)
if placed then
  local pos, at = string.match(placed, '^(%d+):(%-?%d+)$')
  if now < tonumber(at) + tonumber(ARGV[13]) then
    return {'placed', tonumber(pos), tonumber(at), 1}
  end
  redis.call('HDEL', KEYS[3], buyer)
end

local frozen_now = redis.call('HGET', KEYS[1], 'frozen')
if now < opens_at and not frozen_now then
  if redis.call('ZSCORE', KEYS[2], buyer) then
    return {'pre', redis.call('ZCARD', KEYS[2]), 0, 1}
  end
  local size = redis.call('ZCARD', KEYS[2])
  if size >= max_queue then return {'full', size, 0, 0} end
  redis.call('ZADD', KEYS[2], rank_key, buyer)
  keep()
  return {'pre', size + 1, 0, 0}
end

local pre, tail, tail_off, origin, pre_step = freeze()

-- A buyer of the pre-queue: its place follows from its rank (at the step fixed at the
-- opening), unless it comes back after that place's window: then it goes to the back.
local rank = redis.call('ZRANK', KEYS[2], buyer)
if rank and rank < pre and not placed then
  local at = origin + math.ceil(rank * pre_step)
  if now < at + tonumber(ARGV[13]) then
    redis.call('HSET', KEYS[3], buyer, (rank + 1) .. ':' .. at)
    keep()
    return {'placed', rank + 1, at, 0}
  end
end

local step = boosted_step()
local waiting = tail - serving_at(tail, tail_off, step, now - origin)
if waiting >= max_queue then return {'full', waiting, 0, 0} end
local at_off = r6(math.max(tail_off + step, now - origin))
local pos = tail + 1
local admit_at = origin + math.ceil(at_off)
redis.call('HSET', KEYS[1], 'tail', pos, 'tail_off', string.format('%.6f', at_off))
redis.call('HINCRBY', KEYS[1], 'adm:' .. math.floor(admit_at / MINUTE), 1)
redis.call('HSET', KEYS[3], buyer, pos .. ':' .. admit_at)
keep()
return {'placed', pos, admit_at, 0}
