-- Releases the locks ARGV[1] holds among the given ones (one, or every key of a multi-key
-- lock), or takes ARGV[1] out of their fair queues if it was waiting. A free lock then goes
-- straight to the first live waiter of its fair queue, if there is one (so that nobody can
-- barge in ahead of it), or else is deleted. Waiters are told on the lock's channel: the
-- message is "<new holder's token> <its fence>", or empty when the lock is free.
-- A waiter handed the lock gets a lease of at most ARGV[2] ms, its liveness window, and makes it
-- its full ttl when it takes over: a waiter that died just before the release then blocks the
-- queue for no longer than a silent waiter would.
--
-- KEYS, in four runs of one key per lock, each run in the same order of locks: the lock keys,
-- their queues (lists of tokens, oldest first), their waiters (hashes: token -> "<deadline ms>
-- <ttl ms>"), their fence counters.
-- ARGV[1] token, ARGV[2] liveness window of a waiter in ms, ARGV[3] "1" to tell waiters that a
-- lock became free, "0" to stay silent (undoing an attempt that never held the lock on a
-- majority wakes nobody), ARGV[4…] one notification channel per lock.
-- Returns how many of the locks ARGV[1] held and no longer does.
local token = ARGV[1]
local count = #KEYS / 4
local now = nil

-- Every holder, and whether any queue exists: two calls for any number of locks, where most
-- have no queue (a multi-key lock has at most 1,000 keys, well within what Lua can unpack).
-- One lock, the common case, is read without unpacking a table of one.
local holders, any_queue
if count == 1 then
  holders = {redis.call('GET', KEYS[1])}
  any_queue = redis.call('EXISTS', KEYS[2]) == 1
else
  holders = redis.call('MGET', unpack(KEYS, 1, count))
  any_queue = redis.call('EXISTS', unpack(KEYS, count + 1, 2 * count)) > 0
end

-- Lock i, told on ARGV[3 + i].
local function release(i)
  -- Its keys: KEYS[i] the lock, KEYS[count + i] its queue, KEYS[2 * count + i] its waiters,
  -- KEYS[3 * count + i] its fence counter.
  local holder = holders[i]
  local released = 0
  if holder == token then
    released = 1
  else
    if redis.call('HDEL', KEYS[2 * count + i], token) == 1 then
      redis.call('LREM', KEYS[count + i], 1, token)
    end
    if holder then
      return 0
    end
  end

  if any_queue and redis.call('EXISTS', KEYS[count + i]) == 1 then
    if not now then
      local time = redis.call('TIME')
      now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
    end
    local head = redis.call('LPOP', KEYS[count + i])
    while head do
      local entry = redis.call('HGET', KEYS[2 * count + i], head)
      redis.call('HDEL', KEYS[2 * count + i], head)
      if entry then
        local deadline, ttl = string.match(entry, '^(%d+) (%d+)$')
        if tonumber(deadline) >= now then
          redis.call('SET', KEYS[i], head, 'PX', math.min(tonumber(ttl), tonumber(ARGV[2])))
          local next_fence = redis.call('INCR', KEYS[3 * count + i])
          redis.call('PERSIST', KEYS[3 * count + i])
          redis.call('PUBLISH', ARGV[3 + i], head .. ' ' .. next_fence)
          return released
        end
      end
      head = redis.call('LPOP', KEYS[count + i])
    end
  end

  if released == 1 then
    redis.call('DEL', KEYS[i])
    if ARGV[3] == '1' then
      redis.call('PUBLISH', ARGV[3 + i], '')
    end
  end
  return released
end

local released = 0
for i = 1, count do
  released = released + release(i)
end
return released
