-- `lock` over the keys of one slot group: takes every one for ARGV[1] with a lease of ARGV[2]
-- ms, or none. No fences: like a single key's `lock` (SET NX PX), it hands out a token only.
-- KEYS: lock keys.
-- Returns {1} if all were taken (a key already held by ARGV[1], from an earlier attempt, is
-- renewed), else {0, index of the first held key (1-based), its holder's remaining ttl in ms}.
for i = 1, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if holder and holder ~= ARGV[1] then
    return {0, i, redis.call('PTTL', KEYS[i])}
  end
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
end
return {1}
