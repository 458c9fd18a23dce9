-- Shared by every read-write lock script (put in front of each). Leases and liveness deadlines
-- are read against Redis's own clock, so client clocks never matter.
-- KEYS[1] the write lock (the writer's token, set with SET NX PX as a plain lock is),
-- KEYS[2] readers (zset: token -> end of its lease, ms), KEYS[3] waiting writers (zset: token
-- -> liveness deadline, ms), KEYS[4] fair queue (zset: "r" or "w" .. token -> arrival number),
-- KEYS[5] fair waiters' liveness (zset: same members -> deadline, ms), KEYS[6] arrival
-- counter, KEYS[7] fence counter (shared with a plain lock on the same key). A reader, who
-- never takes a fence, is not passed KEYS[7], nor KEYS[6] unless it is fair.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- Drops fair waiters that stopped checking in; returns whether anyone is left in the queue.
local function queue_alive()
  if redis.call('EXISTS', KEYS[4]) == 0 then
    return false
  end
  while true do
    local silent = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, 256)
    if #silent == 0 then
      return redis.call('EXISTS', KEYS[4]) == 1
    end
    for _, member in ipairs(silent) do
      redis.call('ZREM', KEYS[5], member)
      redis.call('ZREM', KEYS[4], member)
    end
  end
end

-- Readers whose lease ran out (crashed, say) and waiters that stopped checking in are gone.
-- Returns whether anyone is left in the fair queue.
local function prune()
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  return queue_alive()
end

-- Whether a writer waits now (its liveness deadline has not passed).
local function writer_waiting()
  return redis.call('ZCOUNT', KEYS[3], '(' .. now, '+inf') > 0
end

-- The sorted set KEYS[z] outlives every deadline in it: one that would end after it (`ms`
-- from now) pushes its expiry to twice that ahead, so most calls leave it alone. (An emptied
-- sorted set is gone at once.) `left`: its PTTL, when the caller read it since the set last
-- changed but for the deadline just added.
local function cover(z, ms, left)
  if (left or redis.call('PTTL', KEYS[z])) < ms + 1000 then
    redis.call('PEXPIRE', KEYS[z], 2 * ms + 1000)
  end
end

-- The sorted set KEYS[z], scored by deadlines, lives as long as its latest one (and so do
-- the keys KEYS[also…] that belong to it); empty, they go. So an idle lock leaves nothing
-- behind but its fence counter (which never expires).
local function keep(z, also)
  local newest = redis.call('ZRANGE', KEYS[z], -1, -1, 'WITHSCORES')
  local indexes = {z}
  for _, i in ipairs(also or {}) do
    table.insert(indexes, i)
  end
  for _, i in ipairs(indexes) do
    if newest[2] then
      redis.call('PEXPIRE', KEYS[i], tonumber(newest[2]) - now + 1000)
    else
      redis.call('DEL', KEYS[i])
    end
  end
end

local function keep_queue()
  keep(5, {4, 6})
end

-- Joins the fair queue (or refreshes the liveness deadline there).
local function queue_up(member, liveness)
  if not redis.call('ZSCORE', KEYS[4], member) then
    redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[6]), member)
  end
  redis.call('ZADD', KEYS[5], now + liveness, member)
end

local function leave_queue(member)
  redis.call('ZREM', KEYS[4], member)
  redis.call('ZREM', KEYS[5], member)
end

-- When to look again at the latest: when the writer's or the first reader's lease ends.
local function recheck_in()
  local writer = redis.call('PTTL', KEYS[1])
  if writer > 0 then
    return writer
  end
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if first[2] then
    return tonumber(first[2]) - now
  end
  return -1
end
