-- Gives back the permits ARGV[1] holds, or takes it out of the fair queue if it waits there,
-- and tells waiters on ARGV[2].
-- Returns 1 if ARGV[1] held permits (with its lease running) and no longer does, else 0.
local state = holders_state(ARGV[1], IN_USE, RECLAIM_AT)
local left_queue = false
if redis.call('EXISTS', KEYS[3]) == 1 then
  left_queue = redis.call('ZREM', KEYS[3], ARGV[1]) == 1
  redis.call('ZREM', KEYS[4], ARGV[1])
  if left_queue then
    keep_queue()
  end
end
local permits = state[1]
if permits then
  -- Every holder holds one permit at least: none in use means no holder left.
  local used = tonumber(state[2] or '0') - tonumber(permits)
  if used <= 0 then
    redis.call('DEL', KEYS[1], KEYS[2])
  else
    redis.call('HDEL', KEYS[2], ARGV[1])
    redis.call('HSET', KEYS[2], IN_USE, used)
    redis.call('ZREM', KEYS[1], ARGV[1])
  end
end
if permits or left_queue then
  redis.call('PUBLISH', ARGV[2], '')
end
if permits then
  return 1
end
return 0
