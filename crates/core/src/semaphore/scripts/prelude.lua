-- Shared by every semaphore script (put in front of each). Leases and liveness deadlines are
-- read against Redis's own clock, so client clocks never matter.
-- KEYS[1] leases (zset: holder token -> end of its lease, ms), KEYS[2] permits held (hash:
-- holder token -> its permits, "in-use" -> their sum, "expires" -> when KEYS[1] and KEYS[2]
-- expire, ms, "reclaim-at" -> a time no lease ends before, ms), KEYS[3] fair queue (zset: waiter
-- token -> arrival number), KEYS[4] waiters' liveness (zset: waiter token -> deadline, ms),
-- KEYS[5] arrival counter, KEYS[6] fence counter (never expires: a counter that vanished would
-- start again at 1)
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local IN_USE = 'in-use'
local EXPIRES = 'expires'
-- No lease ends before it, so until then there is nothing to reclaim and no call has to look.
-- Absent (unknown) when no lease is left (the hash is gone then), or for keys written before it
-- existed; a lease that would end earlier lowers it.
local RECLAIM_AT = 'reclaim-at'

-- Frees the permits of holders whose lease ran out (a crashed holder's, say), a batch at a
-- time so that any number of them fits in one call; then sets RECLAIM_AT to the first lease end.
local function reclaim_expired()
  while true do
    local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 256)
    if #expired == 0 then
      break
    end
    for _, holder in ipairs(expired) do
      local permits = tonumber(redis.call('HGET', KEYS[2], holder) or '0')
      redis.call('HDEL', KEYS[2], holder)
      redis.call('ZREM', KEYS[1], holder)
      redis.call('HINCRBY', KEYS[2], IN_USE, -permits)
    end
  end
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if first[2] then
    redis.call('HSET', KEYS[2], RECLAIM_AT, first[2])
  else
    -- No holder left: the counts go with the leases, so that the next holder's keys get their
    -- expiry afresh (a count kept on would say they had it, and a new leases key would have none).
    redis.call('DEL', KEYS[2])
  end
end

-- HMGET of KEYS[2]'s `fields` once expired holders are reclaimed, which only a call at or after
-- RECLAIM_AT has to do. The last value returned is RECLAIM_AT's.
local function holders_state(...)
  local state = redis.call('HMGET', KEYS[2], ...)
  local reclaim_at = tonumber(state[#state])
  if reclaim_at and now < reclaim_at then
    return state
  end
  reclaim_expired()
  return redis.call('HMGET', KEYS[2], ...)
end

-- RECLAIM_AT once a lease ending at `lease_end` is added: the earlier of the two (`reclaim_at`
-- as read after the reclaim, absent only when no lease is left).
local function reclaim_at_with(lease_end, reclaim_at)
  return reclaim_at and math.min(lease_end, tonumber(reclaim_at)) or lease_end
end

-- Drops fair waiters that stopped checking in (crashed, or gave up without saying so).
local function drop_silent_waiters()
  while true do
    local silent = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 256)
    if #silent == 0 then
      return
    end
    for _, waiter in ipairs(silent) do
      redis.call('ZREM', KEYS[4], waiter)
      redis.call('ZREM', KEYS[3], waiter)
    end
  end
end

local function in_use()
  return tonumber(redis.call('HGET', KEYS[2], IN_USE) or '0')
end

-- The holders' keys outlive every lease: a lease that would end after them (ms from now,
-- `lease_ms`) pushes their expiry to twice that ahead, so most calls leave it alone. `expires`
-- is the expiry recorded in KEYS[2].
local function cover(lease_ms, expires)
  local needed = now + lease_ms + 1000
  if tonumber(expires or '0') >= needed then
    return
  end
  local at = now + 2 * lease_ms + 1000
  redis.call('HSET', KEYS[2], EXPIRES, at)
  redis.call('PEXPIREAT', KEYS[1], at)
  redis.call('PEXPIREAT', KEYS[2], at)
end

-- The queue's keys live as long as the latest liveness deadline; empty, they go.
local function keep_queue()
  local newest = redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')
  if not newest[2] then
    redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
    return
  end
  local ms = tonumber(newest[2]) - now + 1000
  for i = 3, 5 do
    redis.call('PEXPIRE', KEYS[i], ms)
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
