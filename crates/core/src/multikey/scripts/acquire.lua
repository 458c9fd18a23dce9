-- Takes every lock of one slot group for ARGV[1] with a lease of ARGV[2] ms, or none of them.
-- KEYS: the lock keys, then their fence counters in the same order (the ones a single lock on
-- the key uses).
-- Returns {1, fence of each key...} if all were taken (a key already held by ARGV[1], from an
-- earlier attempt of the same wait, keeps its fence), else {0, index of the first held key
-- (1-based), its holder's remaining ttl in ms}.
-- The holders are read by one MGET (a lock has at most 1,000 keys, well within what Lua can
-- unpack).
local count = #KEYS / 2
local holders = redis.call('MGET', unpack(KEYS, 1, count))
for i = 1, count do
  if holders[i] and holders[i] ~= ARGV[1] then
    return {0, i, redis.call('PTTL', KEYS[i])}
  end
end
local taken = {1}
for i = 1, count do
  if holders[i] then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    table.insert(taken, tonumber(redis.call('GET', KEYS[count + i]) or '0'))
  else
    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
    table.insert(taken, redis.call('INCR', KEYS[count + i]))
    redis.call('PERSIST', KEYS[count + i])
  end
end
return taken
