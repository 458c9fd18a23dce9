-- Raises a fence counter to at least ARGV[1], so that every host of a Redlock majority agrees
-- on the highest fencing number handed out so far.
-- KEYS[1] fence counter; ARGV[1] fencing number,
-- ARGV[2] how long the fence counter outlives its last use, in ms.
-- Returns the counter's value afterwards.
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = tonumber(ARGV[1])
if current < wanted then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return wanted
end
return current
