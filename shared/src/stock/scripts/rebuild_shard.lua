-- rebuild_shard.lua: writes one shard's stock from the durable records, in one atomic step:
-- the counters, every hold the records back (H for PENDING / PAYMENT_PROCESSING, C for sold),
-- and the active-holds index. Active holds the records do not back are marked released (the
-- units they had are already counted as available). The shard stays paused; resume.lua
-- reopens it once every shard is written. The record names this Redis process as its writer
-- and is no longer fenced: it was verified against the durable records here (common.lua).
--
-- available = initial - held - sold. If that is negative the shard is oversold: it is kept
-- negative (a debt), so units released later pay it back instead of being sold again.
--
-- KEYS[1]: fs:{S:i}:stock
-- KEYS[2]: fs:{S:i}:holds
-- KEYS[3]: fs:{S:i}:hold-times
-- ARGV[1]: initial units of this shard
-- ARGV[2]: shard count of the sale
-- ARGV[3]: per-user limit
-- ARGV[4]: now, ms since epoch
-- ARGV[5 + 2k], ARGV[6 + 2k]: reservation id, hold "state|qty|expires_ms|created_ms|user"
--                             (state H or C)
-- Returns {"OK", available, held, sold, dropped}
local wanted = {}
local held, sold = 0, 0
local active = redis.call('ZRANGE', KEYS[3], 0, -1)
redis.call('DEL', KEYS[3])
for i = 5, #ARGV, 2 do
  local id = ARGV[i]
  local hold = decode_hold(ARGV[i + 1])
  local created = hold.created_ms
  local existing = redis.call('HGET', KEYS[2], id)
  if existing then
    created = decode_hold(existing).created_ms
  end
  redis.call('HSET', KEYS[2], id, encode_hold(hold.state, hold.qty, hold.expires_ms, created, hold.user))
  if hold.state == 'H' then
    held = held + hold.qty
    redis.call('ZADD', KEYS[3], created, id)
  else
    sold = sold + hold.qty
  end
  wanted[id] = true
end
local dropped = 0
for _, id in ipairs(active) do
  if not wanted[id] then
    local raw = redis.call('HGET', KEYS[2], id)
    if raw then
      local hold = decode_hold(raw)
      if hold.state == 'H' then
        redis.call('HSET', KEYS[2], id,
          encode_hold('R', hold.qty, hold.expires_ms, hold.created_ms, hold.user))
        dropped = dropped + 1
      end
    end
  end
end
local initial = tonumber(ARGV[1])
local available = initial - held - sold
redis.call('HSET', KEYS[1], 'initial', initial, 'available', available, 'held', held,
  'sold', sold, 'shards', ARGV[2], 'limit', ARGV[3], 'paused', 1, 'writer', current_run_id())
redis.call('HDEL', KEYS[1], 'placeholder', 'fenced')
return { 'OK', available, held, sold, dropped }
