-- Ends ARGV[1]'s write hold, and tells waiters on ARGV[2].
-- KEYS[1] the write lock (the writer's token, with its own expiry).
-- Returns 1 if ARGV[1] held it, else 0. A writer left the waiting writers and the queue when it
-- was let in, so there is nothing else to leave, and the key's expiry is its lease: no read of
-- Redis's clock is needed.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], '')
  return 1
end
return 0
