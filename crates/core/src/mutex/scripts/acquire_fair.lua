-- One step of a fair (first come, first served) wait for a lock.
-- The caller joins the queue on its first call and refreshes its liveness deadline on every
-- later one; deadlines are read against Redis's own clock, so client clocks never matter.
-- The lock is taken only by the first live waiter in the queue, and a release hands it over
-- to that waiter directly (see release.lua), so nobody can barge in ahead of the queue.
--
-- KEYS[1] lock key, KEYS[2] queue (list of tokens, oldest first),
-- KEYS[3] waiters (hash: token -> "<deadline ms> <ttl ms>"), KEYS[4] fence counter
-- ARGV[1] token, ARGV[2] ttl in ms, ARGV[3] liveness in ms (a waiter silent that long is dropped)
-- Returns {1, fence, ttl} if ARGV[1] holds the lock, else {0, remaining ttl of the holder, or -1
-- if the lock is free but another waiter is first in line}.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  -- Handed over by a release (with a lease no longer than the liveness window, in case this
  -- waiter had died), or taken by an attempt whose answer never came: the full lease starts now.
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(redis.call('GET', KEYS[4]) or '0'), tonumber(ARGV[2])}
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local liveness = tonumber(ARGV[3])
if redis.call('HSET', KEYS[3], ARGV[1], (now + liveness) .. ' ' .. ARGV[2]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
end
redis.call('PEXPIRE', KEYS[2], liveness * 2)
redis.call('PEXPIRE', KEYS[3], liveness * 2)
if holder then
  return {0, redis.call('PTTL', KEYS[1])}
end

-- The lock is free: drop dead waiters from the head of the queue until a live one leads.
local head = redis.call('LINDEX', KEYS[2], 0)
while head do
  local entry = redis.call('HGET', KEYS[3], head)
  if entry and tonumber(string.match(entry, '^(%d+)')) >= now then
    break
  end
  redis.call('LPOP', KEYS[2])
  redis.call('HDEL', KEYS[3], head)
  head = redis.call('LINDEX', KEYS[2], 0)
end
if head ~= ARGV[1] then
  return {0, -1}
end
redis.call('LPOP', KEYS[2])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local fence = redis.call('INCR', KEYS[4])
redis.call('PERSIST', KEYS[4])
return {1, fence, tonumber(ARGV[2])}
