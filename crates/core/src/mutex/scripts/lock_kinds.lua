-- Tells which keys are relock locks or semaphores, so that operator calls never touch
-- application data. A relock lock is a string with an expiry whose value is a relock token (a
-- uuid); a semaphore is a sorted set beside the hash of its permits.
-- KEYS: n candidate keys, then for each the hash of permits a semaphore of that name keeps.
-- Returns one number per candidate: 0 no such key, 1 a relock lock, 2 anything else, 3 a
-- relock semaphore.
local token_shape = '^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$'
local kinds = {}
local count = #KEYS / 2
for i = 1, count do
  local type = redis.call('TYPE', KEYS[i])['ok']
  if type == 'none' then
    kinds[i] = 0
  elseif type == 'string' and redis.call('PTTL', KEYS[i]) > 0
      and string.match(redis.call('GET', KEYS[i]), token_shape) then
    kinds[i] = 1
  elseif type == 'zset' and redis.call('EXISTS', KEYS[count + i]) == 1 then
    kinds[i] = 3
  else
    kinds[i] = 2
  end
end
return kinds
