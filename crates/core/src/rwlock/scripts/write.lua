-- Takes the write lock for ARGV[1] with a lease of ARGV[2] ms, and a fence from the counter a
-- plain lock on the same key shares. Refused while anyone reads or writes; a refused writer is
-- recorded as waiting (for ARGV[4] ms, renewed by each attempt), which turns new readers away.
-- ARGV[3] "1": fair, admitted only at the head of the queue.
-- Returns {1, fence} if taken (or already held by ARGV[1]: an earlier attempt of the same wait
-- whose answer never came took it), else {0, ms until a lease ends, or -1}.
local token, ttl, liveness = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4])
-- One call sees the common case: no readers, no waiting writers, no queue, so nothing to prune,
-- count or leave.
local others = redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4]) > 0
local queued = others and prune()
local holder = redis.call('GET', KEYS[1])
if holder == token then
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {1, tonumber(redis.call('GET', KEYS[7]) or '0')}
end
local busy = holder or (others and redis.call('ZCARD', KEYS[2]) > 0)
if ARGV[3] == '1' then
  local member = 'w' .. token
  queue_up(member, liveness)
  if busy or redis.call('ZRANGE', KEYS[4], 0, 0)[1] ~= member then
    keep_queue()
    return {0, recheck_in()}
  end
  leave_queue(member)
  keep_queue()
else
  if busy or queued then
    redis.call('ZADD', KEYS[3], now + liveness, token)
    cover(3, liveness)
    return {0, recheck_in()}
  end
  if others then
    redis.call('ZREM', KEYS[3], token)
  end
end
redis.call('SET', KEYS[1], token, 'PX', ttl)
local fence = redis.call('INCR', KEYS[7])
redis.call('PERSIST', KEYS[7])
return {1, fence}
