-- Renews every lock of one slot group to ARGV[2] ms, if ARGV[1] still holds all of them.
-- KEYS: the lock keys. Returns 1 if renewed, 0 if any of them was lost (none is renewed then:
-- the loss of one key is the loss of the whole).
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) ~= ARGV[1] then
    return 0
  end
end
for i = 1, #KEYS do
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
return 1
