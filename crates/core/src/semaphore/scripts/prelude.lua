-- Shared by every semaphore script (put in front of each). Leases and liveness deadlines are
-- read against Redis's own clock, so client clocks never matter.
-- KEYS[1] leases (zset: holder token -> end of its lease, ms), KEYS[2] permits held (hash:
-- holder token -> permits), KEYS[3] permits in use (sum of KEYS[2]), KEYS[4] fair queue (zset:
-- waiter token -> arrival number), KEYS[5] waiters' liveness (zset: waiter token -> deadline,
-- ms), KEYS[6] arrival counter, KEYS[7] fence counter
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- Frees the permits of holders whose lease ran out (a crashed holder's, say), a batch at a
-- time so that any number of them fits in one call.
local function reclaim_expired()
  while true do
    local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 256)
    if #expired == 0 then
      return
    end
    for _, holder in ipairs(expired) do
      local permits = tonumber(redis.call('HGET', KEYS[2], holder) or '0')
      redis.call('HDEL', KEYS[2], holder)
      redis.call('ZREM', KEYS[1], holder)
      if permits > 0 then
        redis.call('DECRBY', KEYS[3], permits)
      end
    end
  end
end

-- Drops fair waiters that stopped checking in (crashed, or gave up without saying so).
local function drop_silent_waiters()
  while true do
    local silent = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, 256)
    if #silent == 0 then
      return
    end
    for _, waiter in ipairs(silent) do
      redis.call('ZREM', KEYS[5], waiter)
      redis.call('ZREM', KEYS[4], waiter)
    end
  end
end

local function in_use()
  return tonumber(redis.call('GET', KEYS[3]) or '0')
end

-- Every key lives as long as the longest lease or waiter, so an idle semaphore leaves nothing
-- behind but its fence counter (which never expires: a counter that vanished would start
-- again at 1).
local function keep_alive()
  local last = 0
  for _, zset in ipairs({KEYS[1], KEYS[5]}) do
    local newest = redis.call('ZRANGE', zset, -1, -1, 'WITHSCORES')
    if newest[2] and tonumber(newest[2]) > last then
      last = tonumber(newest[2])
    end
  end
  if last <= now then
    redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
    return
  end
  for i = 1, 6 do
    redis.call('PEXPIRE', KEYS[i], last - now + 1000)
  end
end

-- When to look again at the latest: when the first lease runs out.
local function first_lease_end()
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if first[2] then
    return tonumber(first[2]) - now
  end
  return -1
end
