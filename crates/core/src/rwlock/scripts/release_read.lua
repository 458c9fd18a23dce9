-- Ends ARGV[1]'s read hold, and tells waiters on ARGV[2] when it was the last reader.
-- KEYS[1] readers (zset: token -> end of its lease, ms).
-- Returns 1 if ARGV[1] was still among the readers, else 0. A reader whose lease ran out is
-- still there until a writer prunes it, and a writer comes in only after pruning every reader
-- whose lease ran out: so still there means no writer came in while it held, whatever the
-- clock says, and no read of Redis's clock is needed.
local released = redis.call('ZREM', KEYS[1], ARGV[1])
if released == 1 and redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('PUBLISH', ARGV[2], '')
end
return released
