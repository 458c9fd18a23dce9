-- Turns ARGV[1]'s write lock into a read lease of ARGV[2] ms in one step, so no other writer
-- can come in between; waiting readers are told on ARGV[3].
-- Returns 1 if done, 0 if ARGV[1] no longer held the write lock.
prune()
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
cover(2, tonumber(ARGV[2]))
redis.call('PUBLISH', ARGV[3], '')
return 1
