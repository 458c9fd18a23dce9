-- The state of a semaphore, for callers and operators; expired leases are reclaimed first.
-- Returns {permits in use, {holder, permits, ms left, ...}, {waiter, ...} in queue order,
-- holder count, queue length, fence}; at most ARGV[1] holders and waiters are listed (the
-- counts are always exact).
reclaim_expired()
drop_silent_waiters()
local limit = tonumber(ARGV[1])
local holders = {}
local leases = redis.call('ZRANGE', KEYS[1], 0, limit - 1, 'WITHSCORES')
for i = 1, #leases, 2 do
  table.insert(holders, leases[i])
  table.insert(holders, tonumber(redis.call('HGET', KEYS[2], leases[i]) or '0'))
  table.insert(holders, tonumber(leases[i + 1]) - now)
end
return {in_use(), holders, redis.call('ZRANGE', KEYS[3], 0, limit - 1),
  redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[3]), tonumber(redis.call('GET', KEYS[6]) or '0')}
