-- Reads the state of one lock for operators: holder, remaining ttl, fence, fair queue.
-- KEYS[1] lock key, KEYS[2] queue, KEYS[3] waiters, KEYS[4] fence counter, KEYS[5] the hash of
-- permits a semaphore named KEYS[1] would keep, KEYS[6] the readers a read-write lock named
-- KEYS[1] would keep.
-- Returns {holder or false, remaining ttl in ms, fence or false, Redis time in ms,
--          {token, "<deadline ms> <ttl ms>", token, ...} in queue order,
--          1 if KEYS[1] holds something that is not a relock lock or semaphore, else 0,
--          1 if KEYS[1] is a relock semaphore, else 0,
--          how many readers hold it as a read-write lock}.
-- A relock lock is a string with an expiry whose value is a relock token (a uuid).
local token_shape = '^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$'
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local queue = {}
for _, token in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  table.insert(queue, token)
  table.insert(queue, redis.call('HGET', KEYS[3], token) or '')
end
local fence = redis.call('GET', KEYS[4])
local readers = redis.call('ZCOUNT', KEYS[6], '(' .. now, '+inf')
local type = redis.call('TYPE', KEYS[1])['ok']
if type == 'none' then
  return {false, -2, fence, now, queue, 0, 0, readers}
end
if type == 'zset' and redis.call('EXISTS', KEYS[5]) == 1 then
  return {false, -2, fence, now, queue, 0, 1, readers}
end
local ttl = redis.call('PTTL', KEYS[1])
if type == 'string' and ttl > 0 then
  local holder = redis.call('GET', KEYS[1])
  if string.match(holder, token_shape) then
    return {holder, ttl, fence, now, queue, 0, 0, readers}
  end
end
return {false, -2, fence, now, queue, 1, 0, readers}
