-- token_bucket.lua: one token-bucket check, or the refund of one. Time comes from the Redis
-- server (TIME), so every Lambda instance sees the same clock. Keys expire once the bucket would
-- be full again.
--
-- Safe to run twice: each request names itself (KEYS[2]); its decision is kept for a short
-- while, and a second run of the same request answers with it instead of spending again. A
-- refund gives back only what that request spent, once.
--
-- KEYS[1]: fs:{rl:<scope>:<id>}              hash: tokens (float), ts (microseconds)
-- KEYS[2]: fs:{rl:<scope>:<id>}:req:<request id>  this request's decision
--          "<allowed>|<remaining>|<full_in_ms>|<retry_after_ms>" ('R' appended once refunded)
-- ARGV[1]: capacity (>= 1)
-- ARGV[2]: refill rate, tokens per second (> 0, may be fractional)
-- ARGV[3]: cost of this request (>= 1, <= capacity)
-- ARGV[4]: take | refund
-- ARGV[5]: how long a request's decision is kept, ms
-- Returns, for take: {allowed (1|0), remaining (whole tokens), full_in_ms, retry_after_ms}
--   full_in_ms: time until the bucket is full again (X-RateLimit-Reset)
--   retry_after_ms: 0 when allowed, else time until `cost` tokens are available
-- for refund: {1} if the request's tokens are back (now, or by an earlier run), {0} if the
--   request spent none
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local remembered = redis.call('GET', KEYS[2])

local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now_us
end
local elapsed_us = math.max(0, now_us - ts)
tokens = math.min(capacity, tokens + elapsed_us * rate / 1000000)

local function save(tokens_left)
  local full_in_ms = math.ceil((capacity - tokens_left) * 1000 / rate)
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens_left),
    'ts', string.format('%d', now_us))
  redis.call('PEXPIRE', KEYS[1], full_in_ms + 1000)
  return full_in_ms
end

if ARGV[4] == 'refund' then
  if not remembered or string.sub(remembered, 1, 1) ~= '1' then
    return { 0 }
  end
  if string.sub(remembered, -1) == 'R' then
    return { 1 }
  end
  save(math.min(capacity, tokens + cost))
  redis.call('SET', KEYS[2], remembered .. 'R', 'KEEPTTL')
  return { 1 }
end

if remembered then
  local a, r, f, w = string.match(remembered, '^(%d)|(%d+)|(%d+)|(%d+)')
  return { tonumber(a), tonumber(r), tonumber(f), tonumber(w) }
end

local allowed = 0
local retry_after_ms = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry_after_ms = math.ceil((cost - tokens) * 1000 / rate)
end
local full_in_ms = save(tokens)
local reply = { allowed, math.floor(tokens), full_in_ms, retry_after_ms }
redis.call('SET', KEYS[2], table.concat(reply, '|'), 'PX', ARGV[5])
return reply
