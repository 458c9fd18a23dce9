-- The state of a read-write lock, for callers and operators.
-- Returns {writer token or false, writer's ms left, {reader, ms left, ...}, waiting writers,
-- {queue members in order}, reader count, queue length, fence}; at most ARGV[1] readers and
-- queue members are listed (the counts are always exact).
prune()
local limit = tonumber(ARGV[1])
local readers = {}
local leases = redis.call('ZRANGE', KEYS[2], 0, limit - 1, 'WITHSCORES')
for i = 1, #leases, 2 do
  table.insert(readers, leases[i])
  table.insert(readers, tonumber(leases[i + 1]) - now)
end
local writer = false
if redis.call('TYPE', KEYS[1])['ok'] == 'string' then
  writer = redis.call('GET', KEYS[1])
end
return {writer, redis.call('PTTL', KEYS[1]), readers, redis.call('ZCARD', KEYS[3]),
  redis.call('ZRANGE', KEYS[4], 0, limit - 1), redis.call('ZCARD', KEYS[2]),
  redis.call('ZCARD', KEYS[4]), tonumber(redis.call('GET', KEYS[7]) or '0')}
