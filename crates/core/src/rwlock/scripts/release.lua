-- Ends ARGV[1]'s hold (write or read) and takes it out of the waiting writers and the queue
-- if it waited there; waiters are told on ARGV[2] when that may let them in.
-- Returns 1 if ARGV[1] held the lock (with its lease running) and no longer does, else 0.
local token = ARGV[1]

-- Readers whose lease ran out go first: a reader's own lease must still run to count.
local function released_as_reader()
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  return redis.call('ZREM', KEYS[2], token) == 1
end

local released = 0
local wake = false
if redis.call('GET', KEYS[1]) == token then
  redis.call('DEL', KEYS[1])
  released, wake = 1, true
elseif released_as_reader() then
  released = 1
  wake = redis.call('ZCARD', KEYS[2]) == 0
else
  -- Not a holder: a waiter that gives up, or the undo of an attempt.
  if redis.call('ZREM', KEYS[3], token) == 1 then
    -- A writer that gave up: readers it held back may go.
    wake = true
  end
  if queue_alive() then
    for _, member in ipairs({'r' .. token, 'w' .. token}) do
      if redis.call('ZREM', KEYS[4], member) == 1 then
        redis.call('ZREM', KEYS[5], member)
        wake = true
      end
    end
    keep_queue()
  end
end
if wake then
  redis.call('PUBLISH', ARGV[2], '')
end
return released
