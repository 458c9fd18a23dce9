-- Gives back the permits ARGV[1] holds, and tells waiters on ARGV[2].
-- KEYS[1] leases (zset: holder token -> end of its lease, ms), KEYS[2] permits held (hash:
-- holder token -> its permits, "in-use" -> their sum).
-- Returns 1 if ARGV[1] still held them, else 0. A lease that ran out stays until a call
-- reclaims it, and every call that admits a holder first reclaims all leases that ran out: so
-- still there means its permits were never counted free, whatever the clock says, and no read
-- of Redis's clock is needed. (Taking a waiter out of the fair queue is the general release's.)
local permits = redis.call('HGET', KEYS[2], ARGV[1])
if not permits then
  return 0
end
-- Every holder holds one permit at least: none in use means no holder left.
if redis.call('HINCRBY', KEYS[2], 'in-use', -tonumber(permits)) <= 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', ARGV[2], '')
return 1
