-- Renews a lock's ttl if ARGV[1] still holds it.
-- KEYS[1] lock key; ARGV[1] token, ARGV[2] ttl in ms.
-- Returns 1 if renewed, 0 if the lock is gone or held by another token.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
