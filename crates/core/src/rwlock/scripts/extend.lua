-- Renews ARGV[1]'s hold to ARGV[2] ms from now: the write lock if ARGV[3] is "w", its read
-- lease if "r". Returns 1 if renewed, 0 if it no longer held it.
prune()
if ARGV[3] == 'w' then
  if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
  return 0
end
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
cover(2, tonumber(ARGV[2]))
return 1
