-- Takes ARGV[2] permits of a semaphore of ARGV[3] permits for ARGV[1], for ARGV[4] ms.
-- ARGV[5]: the channel that tells waiters to look again. ARGV[6] "1": fair, first come first
-- served: the caller joins the queue (or refreshes its liveness deadline, ARGV[7] ms from now)
-- and is admitted only at its head, so a request for many permits is never passed by smaller
-- ones. A caller that is not fair passes neither, and is admitted only while nobody queues, so
-- it cannot pass fair waiters either.
-- Returns {1, fence, permits left} if admitted (also when an earlier attempt of the same wait
-- was), else {0, permits left, ms until the first lease ends or -1}.
local holder, wanted, permits, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local state = holders_state(IN_USE, EXPIRES, holder, RECLAIM_AT)
local used = tonumber(state[1] or '0')
local lease_end = now + ttl
if state[3] then
  redis.call('ZADD', KEYS[1], lease_end, holder)
  redis.call('HSET', KEYS[2], RECLAIM_AT, reclaim_at_with(lease_end, state[4]))
  cover(ttl, state[2])
  return {1, tonumber(redis.call('GET', KEYS[6]) or '0'), permits - used}
end
local free = permits - used
local queued = redis.call('EXISTS', KEYS[3]) == 1
if queued then
  drop_silent_waiters()
end
if ARGV[6] == '1' then
  if not redis.call('ZSCORE', KEYS[3], holder) then
    redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[5]), holder)
  end
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[7]), holder)
  if redis.call('ZRANGE', KEYS[3], 0, 0)[1] ~= holder or free < wanted then
    keep_queue()
    return {0, free, first_lease_end()}
  end
  redis.call('ZREM', KEYS[3], holder)
  redis.call('ZREM', KEYS[4], holder)
  keep_queue()
  queued = true
elseif free < wanted or (queued and redis.call('ZCARD', KEYS[3]) > 0) then
  return {0, free, first_lease_end()}
end
redis.call('HSET', KEYS[2], holder, wanted, IN_USE, used + wanted,
  RECLAIM_AT, reclaim_at_with(lease_end, state[4]))
redis.call('ZADD', KEYS[1], lease_end, holder)
local fence = redis.call('INCR', KEYS[6])
cover(ttl, state[2])
if queued and free - wanted > 0 and redis.call('EXISTS', KEYS[3]) == 1 then
  -- The next in the queue may fit in what is left.
  redis.call('PUBLISH', ARGV[5], '')
end
return {1, fence, free - wanted}
