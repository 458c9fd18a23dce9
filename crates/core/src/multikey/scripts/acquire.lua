-- Takes every lock of one slot group for ARGV[1] with a lease of ARGV[2] ms, or none of them.
-- KEYS: pairs of lock key and its fence counter (the ones a single lock on the key uses).
-- Returns {1, fence of each key...} if all were taken (a key already held by ARGV[1], from an
-- earlier attempt of the same wait, keeps its fence), else {0, index of the first held key
-- (1-based), its holder's remaining ttl in ms}.
local count = #KEYS / 2
local mine = {}
for i = 1, count do
  local holder = redis.call('GET', KEYS[2 * i - 1])
  if holder then
    if holder ~= ARGV[1] then
      return {0, i, redis.call('PTTL', KEYS[2 * i - 1])}
    end
    mine[i] = true
  end
end
local taken = {1}
for i = 1, count do
  if mine[i] then
    redis.call('PEXPIRE', KEYS[2 * i - 1], ARGV[2])
    table.insert(taken, tonumber(redis.call('GET', KEYS[2 * i]) or '0'))
  else
    redis.call('SET', KEYS[2 * i - 1], ARGV[1], 'PX', ARGV[2])
    table.insert(taken, redis.call('INCR', KEYS[2 * i]))
    redis.call('PERSIST', KEYS[2 * i])
  end
end
return taken
