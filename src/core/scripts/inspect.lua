-- Reads the state of one lock for operators: holder, remaining ttl, fence, fair queue.
-- KEYS[1] lock key, KEYS[2] queue, KEYS[3] waiters, KEYS[4] fence counter.
-- Returns {holder or false, remaining ttl in ms, fence or false, Redis time in ms,
--          {token, "<deadline ms> <ttl ms>", token, ...} in queue order}.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local queue = {}
for _, token in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  table.insert(queue, token)
  table.insert(queue, redis.call('HGET', KEYS[3], token) or '')
end
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[4]), now, queue}
