-- Releases a lock if ARGV[1] holds it, or takes ARGV[1] out of the fair queue if it was waiting.
-- A free lock then goes straight to the first live waiter of the fair queue, if there is one
-- (so that nobody can barge in ahead of it), or else is deleted. Waiters are told on ARGV[2]:
-- the message is "<new holder's token> <its fence>", or empty when the lock is free.
-- A waiter handed the lock gets a lease of at most ARGV[3] ms, its liveness window, and makes it
-- its full ttl when it takes over: a waiter that died just before the release then blocks the
-- queue for no longer than a silent waiter would.
--
-- KEYS[1] lock key, KEYS[2] queue (list of tokens, oldest first),
-- KEYS[3] waiters (hash: token -> "<deadline ms> <ttl ms>"), KEYS[4] fence counter
-- ARGV[1] token, ARGV[2] notification channel, ARGV[3] liveness window of a waiter in ms,
-- ARGV[4] "1" to tell waiters that a lock became free, "0" to stay silent (undoing an attempt
-- that never held the lock on a majority wakes nobody)
-- Returns 1 if ARGV[1] held the lock and no longer does, else 0.
local holder = redis.call('GET', KEYS[1])
local released = 0
if holder == ARGV[1] then
  released = 1
else
  if redis.call('HDEL', KEYS[3], ARGV[1]) == 1 then
    redis.call('LREM', KEYS[2], 1, ARGV[1])
  end
  if holder then
    return 0
  end
end

if redis.call('EXISTS', KEYS[2]) == 1 then
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local head = redis.call('LPOP', KEYS[2])
  while head do
    local entry = redis.call('HGET', KEYS[3], head)
    redis.call('HDEL', KEYS[3], head)
    if entry then
      local deadline, ttl = string.match(entry, '^(%d+) (%d+)$')
      if tonumber(deadline) >= now then
        redis.call('SET', KEYS[1], head, 'PX', math.min(tonumber(ttl), tonumber(ARGV[3])))
        local fence = redis.call('INCR', KEYS[4])
        redis.call('PERSIST', KEYS[4])
        redis.call('PUBLISH', ARGV[2], head .. ' ' .. fence)
        return released
      end
    end
    head = redis.call('LPOP', KEYS[2])
  end
end

if released == 1 then
  redis.call('DEL', KEYS[1])
  if ARGV[4] == '1' then
    redis.call('PUBLISH', ARGV[2], '')
  end
end
return released
