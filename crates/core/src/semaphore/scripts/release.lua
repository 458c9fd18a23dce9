-- Gives back the permits ARGV[1] holds, or takes it out of the fair queue if it waits there,
-- and tells waiters on ARGV[2].
-- Returns 1 if ARGV[1] held permits (with its lease running) and no longer does, else 0.
reclaim_expired()
local left_queue = redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
local permits = redis.call('HGET', KEYS[2], ARGV[1])
if permits then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('DECRBY', KEYS[3], tonumber(permits))
end
if permits or left_queue == 1 then
  redis.call('PUBLISH', ARGV[2], '')
  keep_alive()
end
if permits then
  return 1
end
return 0
