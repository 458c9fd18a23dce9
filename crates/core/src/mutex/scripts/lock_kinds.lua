-- Tells which of KEYS are relock locks, so that operator calls never touch application data.
-- A relock lock is a string with an expiry whose value is a relock token (a uuid).
-- Returns one number per key: 0 no such key, 1 a relock lock, 2 anything else.
local token_shape = '^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$'
local kinds = {}
for i = 1, #KEYS do
  local type = redis.call('TYPE', KEYS[i])['ok']
  if type == 'none' then
    kinds[i] = 0
  elseif type == 'string' and redis.call('PTTL', KEYS[i]) > 0
      and string.match(redis.call('GET', KEYS[i]), token_shape) then
    kinds[i] = 1
  else
    kinds[i] = 2
  end
end
return kinds
