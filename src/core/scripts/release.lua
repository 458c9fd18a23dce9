-- Releases a lock if ARGV[1] holds it, or takes ARGV[1] out of the fair queue if it was waiting.
-- A free lock then goes straight to the first live waiter of the fair queue, if there is one
-- (so that nobody can barge in ahead of it), or else is deleted. Waiters are told on ARGV[2]:
-- the message is "<new holder's token> <its fence>", or empty when the lock is free.
--
-- KEYS[1] lock key, KEYS[2] queue (list of tokens, oldest first),
-- KEYS[3] waiters (hash: token -> "<deadline ms> <ttl ms>"), KEYS[4] fence counter
-- ARGV[1] token, ARGV[2] notification channel,
-- ARGV[3] how long the fence counter outlives its last use, in ms
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
        redis.call('SET', KEYS[1], head, 'PX', ttl)
        local fence = redis.call('INCR', KEYS[4])
        redis.call('PEXPIRE', KEYS[4], ARGV[3])
        redis.call('PUBLISH', ARGV[2], head .. ' ' .. fence)
        return released
      end
    end
    head = redis.call('LPOP', KEYS[2])
  end
end

if released == 1 then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], '')
end
return released
