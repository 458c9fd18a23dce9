-- Releases the locks ARGV[1] holds among the given ones (one, or every key of a multi-key
-- lock), or takes ARGV[1] out of their fair queues if it was waiting. A free lock then goes
-- straight to the first live waiter of its fair queue, if there is one (so that nobody can
-- barge in ahead of it), or else is deleted. Waiters are told on the lock's channel: the
-- message is "<new holder's token> <its fence>", or empty when the lock is free.
-- A waiter handed the lock gets a lease of at most ARGV[2] ms, its liveness window, and makes it
-- its full ttl when it takes over: a waiter that died just before the release then blocks the
-- queue for no longer than a silent waiter would.
--
-- KEYS, four per lock: lock key, queue (list of tokens, oldest first), waiters (hash: token ->
-- "<deadline ms> <ttl ms>"), fence counter.
-- ARGV[1] token, ARGV[2] liveness window of a waiter in ms, ARGV[3] "1" to tell waiters that a
-- lock became free, "0" to stay silent (undoing an attempt that never held the lock on a
-- majority wakes nobody), ARGV[4…] one notification channel per lock.
-- Returns how many of the locks ARGV[1] held and no longer does.
local token = ARGV[1]
local now = nil

-- The lock whose keys start at KEYS[b + 1], told on ARGV[c].
local function release(b, c)
  local holder = redis.call('GET', KEYS[b + 1])
  local released = 0
  if holder == token then
    released = 1
  else
    if redis.call('HDEL', KEYS[b + 3], token) == 1 then
      redis.call('LREM', KEYS[b + 2], 1, token)
    end
    if holder then
      return 0
    end
  end

  if redis.call('EXISTS', KEYS[b + 2]) == 1 then
    if not now then
      local time = redis.call('TIME')
      now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
    end
    local head = redis.call('LPOP', KEYS[b + 2])
    while head do
      local entry = redis.call('HGET', KEYS[b + 3], head)
      redis.call('HDEL', KEYS[b + 3], head)
      if entry then
        local deadline, ttl = string.match(entry, '^(%d+) (%d+)$')
        if tonumber(deadline) >= now then
          redis.call('SET', KEYS[b + 1], head, 'PX', math.min(tonumber(ttl), tonumber(ARGV[2])))
          local next_fence = redis.call('INCR', KEYS[b + 4])
          redis.call('PERSIST', KEYS[b + 4])
          redis.call('PUBLISH', ARGV[c], head .. ' ' .. next_fence)
          return released
        end
      end
      head = redis.call('LPOP', KEYS[b + 2])
    end
  end

  if released == 1 then
    redis.call('DEL', KEYS[b + 1])
    if ARGV[3] == '1' then
      redis.call('PUBLISH', ARGV[c], '')
    end
  end
  return released
end

local released = 0
for i = 0, #KEYS / 4 - 1 do
  released = released + release(4 * i, 4 + i)
end
return released
