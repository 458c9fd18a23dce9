-- Takes a free lock and its fencing number in one step.
-- KEYS[1] lock key, KEYS[2] fence counter; ARGV[1] token, ARGV[2] ttl in ms,
-- ARGV[3] how long the fence counter outlives its last use, in ms.
-- Returns {1, fence, ttl} if taken, else {0, remaining ttl of the holder in ms}.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local fence = redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return {1, fence, tonumber(ARGV[2])}
end
return {0, redis.call('PTTL', KEYS[1])}
