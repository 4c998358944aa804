-- token_bucket.lua: one token-bucket check. Time comes from the Redis server (TIME), so
-- every Lambda instance sees the same clock. Keys expire once the bucket would be full again.
--
-- KEYS[1]: fs:{rl:<scope>:<id>}  hash: tokens (float), ts (microseconds)
-- ARGV[1]: capacity (>= 1)
-- ARGV[2]: refill rate, tokens per second (> 0, may be fractional)
-- ARGV[3]: cost of this request (>= 1, <= capacity)
-- Returns {allowed (1|0), remaining (whole tokens), full_in_ms, retry_after_ms}
--   full_in_ms: time until the bucket is full again (X-RateLimit-Reset)
--   retry_after_ms: 0 when allowed, else time until `cost` tokens are available
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])

local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now_us
end
local elapsed_us = math.max(0, now_us - ts)
tokens = math.min(capacity, tokens + elapsed_us * rate / 1000000)

local allowed = 0
local retry_after_ms = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry_after_ms = math.ceil((cost - tokens) * 1000 / rate)
end
local full_in_ms = math.ceil((capacity - tokens) * 1000 / rate)
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', string.format('%d', now_us))
redis.call('PEXPIRE', KEYS[1], full_in_ms + 1000)
return { allowed, math.floor(tokens), full_in_ms, retry_after_ms }
