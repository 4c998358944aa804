-- breaker.lua: one circuit breaker shared by every Lambda instance. One key, so one cluster
-- slot; time comes from the caller (ARGV[2]) like the stock scripts, so tests can move it.
--
-- Safe to run twice with the same arguments (a client that re-sends it after a lost answer):
-- an acquire by the caller that already holds the probe answers "probe" again, and every
-- record names its permit (ARGV[6]); a permit's failure counts once (KEYS[2] remembers it).
--
-- KEYS[1]: fs:breaker:{<name>}  hash:
--   state        closed | open | half_open   (no key = closed, no failures)
--   failures     consecutive failures while closed
--   open_until   ms: while open, calls are refused until then
--   probe        token of the one caller allowed through while half-open
--   probe_until  ms: the probe's lease; after it another caller may probe
-- ARGV[1]: op: acquire | record | state
-- ARGV[2]: now, ms
-- ARGV[3]: failure threshold (>= 1)
-- ARGV[4]: cooldown, ms
-- ARGV[5]: probe lease, ms
-- KEYS[2]: fs:breaker:{<name>}:rec:<token>  record only: set once the permit's verdict counted
-- ARGV[6]: acquire: the token the permit will carry; record: the permit's token
-- ARGV[7]: record: 1 = success, 0 = failure
-- ARGV[8]: record: 1 if the permit was the probe, 0 if it was let through a closed circuit
--
-- acquire returns {1, 0, 0} (pass), {1, 1, 0} (pass as the probe) or
--                 {0, retry_after_ms, state} (refused; state 1 = open, 2 = half_open)
-- record and state return {state}: 0 = closed, 1 = open, 2 = half_open
local key = KEYS[1]
local op = ARGV[1]
local now = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local cooldown = tonumber(ARGV[4])
local lease = tonumber(ARGV[5])
-- Open and half-open records outlive any cooldown; the TTL only collects forgotten breakers.
local keep = cooldown + lease + 86400000

local h = redis.call('HMGET', key, 'state', 'failures', 'open_until', 'probe', 'probe_until')
local state = h[1] or 'closed'
local failures = tonumber(h[2]) or 0
local open_until = tonumber(h[3]) or 0
local probe = h[4] or ''
local probe_until = tonumber(h[5]) or 0

local function open_now()
  redis.call('HSET', key, 'state', 'open', 'open_until', tostring(now + cooldown), 'failures', '0')
  redis.call('HDEL', key, 'probe', 'probe_until')
  redis.call('PEXPIRE', key, keep)
end

local function code(s)
  if s == 'open' then return 1 elseif s == 'half_open' then return 2 else return 0 end
end

if op == 'state' then
  -- An open breaker whose cooldown is over lets the next caller probe: report it half-open.
  if state == 'open' and now >= open_until then return {2} end
  return {code(state)}
end

if op == 'acquire' then
  if state == 'closed' then return {1, 0, 0} end
  if state == 'open' and now < open_until then return {0, open_until - now, 1} end
  if state == 'half_open' and probe == ARGV[6] then return {1, 1, 0} end
  if state == 'half_open' and now < probe_until then return {0, probe_until - now, 2} end
  -- Cooldown over, or the last probe's lease ran out (it crashed or hung): this caller probes.
  redis.call('HSET', key, 'state', 'half_open', 'probe', ARGV[6], 'probe_until', tostring(now + lease))
  redis.call('PEXPIRE', key, keep)
  return {1, 1, 0}
end

if op == 'record' then
  local token = ARGV[6]
  local success = ARGV[7] == '1'
  if ARGV[8] == '1' then
    -- A probe's verdict counts only while it still holds the lease.
    if state == 'half_open' and probe == token then
      if success then
        redis.call('DEL', key)
        return {0}
      end
      open_now()
      return {1}
    end
    return {code(state)}
  end
  -- A call let through while closed. Once open, late answers of calls started before change
  -- nothing: only the probe decides.
  if state ~= 'closed' then return {code(state)} end
  if success then
    if failures > 0 then redis.call('DEL', key) end
    return {0}
  end
  -- A failure counts once per permit, even if this record runs twice (remembered for a minute:
  -- a re-sent script arrives within seconds). A probe's record needs no such memory: it clears
  -- the probe, so a second run no longer matches it.
  if redis.call('SET', KEYS[2], '1', 'NX', 'PX', 60000) == false then
    return {0}
  end
  failures = failures + 1
  if failures >= threshold then
    open_now()
    return {1}
  end
  redis.call('HSET', key, 'state', 'closed', 'failures', tostring(failures))
  -- A failure streak is forgotten after a quiet cooldown.
  redis.call('PEXPIRE', key, cooldown)
  return {0}
end

return redis.error_reply('breaker.lua: unknown op ' .. tostring(op))
