-- Takes a free lock and its fencing number in one step.
-- KEYS[1] lock key, KEYS[2] fence counter; ARGV[1] token, ARGV[2] ttl in ms.
-- Returns {1, fence, ttl} if taken (or already held by ARGV[1]: an earlier attempt of the same
-- wait whose answer never came took it), else {0, remaining ttl of the holder in ms}.
-- The fence counter never expires: a counter that vanished would start again at 1 and hand out
-- numbers lower than the ones a stale holder may still write with.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(ARGV[2])}
end
if holder then
  return {0, redis.call('PTTL', KEYS[1])}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local fence = redis.call('INCR', KEYS[2])
redis.call('PERSIST', KEYS[2])
return {1, fence, tonumber(ARGV[2])}
