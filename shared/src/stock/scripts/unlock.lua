-- unlock.lua: deletes a lock only if this caller still owns it (its token).
--
-- KEYS[1]: the lock key
-- ARGV[1]: the owner's token
-- Returns 1 if deleted, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
