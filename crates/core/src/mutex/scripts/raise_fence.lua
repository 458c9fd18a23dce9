-- Raises a fence counter to at least ARGV[1], so that a majority of Redlock hosts holds the
-- highest fencing number handed out so far.
-- KEYS[1] fence counter; ARGV[1] fencing number.
-- Returns the counter's value afterwards.
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = tonumber(ARGV[1])
if current < wanted then
  redis.call('SET', KEYS[1], ARGV[1])
  return wanted
end
redis.call('PERSIST', KEYS[1])
return current
