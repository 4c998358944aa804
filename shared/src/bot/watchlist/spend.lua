-- spend.lua: spends a challenge nonce for one request.
-- KEYS[1] the spent-nonce key; ARGV[1] request id; ARGV[2] ms to remember it.
-- Returns 1 the first time and for the same request again (a re-sent call), 0 for any other
-- request (a replay). Safe to run twice by construction.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
