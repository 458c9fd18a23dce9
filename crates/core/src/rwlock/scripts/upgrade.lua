-- Turns ARGV[1]'s read lease into the write lock (lease ARGV[2] ms) in one step, only if it is
-- the only reader and nobody holds the write lock.
-- Returns {1, fence} if done; {0, other readers} if others read; {-1} if another holds the
-- write lock (a plain lock on the same key); {-2} if ARGV[1] no longer reads.
prune()
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return {-2}
end
local others = redis.call('ZCARD', KEYS[2]) - 1
if others > 0 then
  return {0, others}
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {-1}
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local fence = redis.call('INCR', KEYS[7])
redis.call('PERSIST', KEYS[7])
return {1, fence}
