-- Takes a read lease for ARGV[1] of ARGV[2] ms. Readers share the lock; they are refused while
-- a writer holds it and, so that writers never starve, while a writer waits. ARGV[3] "1": fair,
-- strictly in arrival order: admitted once only readers are ahead in the queue (ARGV[4]: a
-- waiter's liveness window, ms). ARGV[5]: the channel that tells waiters to look again. A
-- reader that is not fair passes ARGV[1] and ARGV[2] alone.
-- Returns {1} if admitted (also when an earlier attempt of the same wait was), else
-- {0, ms until a lease ends, or -1}.
-- Expired readers do not keep readers out; a reader that comes in prunes them.
local token, ttl = ARGV[1], tonumber(ARGV[2])
-- Admitted by an earlier attempt of the same wait whose answer never came.
local function already_reading()
  if redis.call('ZSCORE', KEYS[2], token) then
    redis.call('ZADD', KEYS[2], now + ttl, token)
    cover(2, ttl)
    return true
  end
  return false
end
if ARGV[3] == '1' then
  queue_alive()
  if already_reading() then
    return {1}
  end
  local member = 'r' .. token
  queue_up(member, tonumber(ARGV[4]))
  if redis.call('EXISTS', KEYS[1]) == 1 then
    keep_queue()
    return {0, recheck_in()}
  end
  local rank = redis.call('ZRANK', KEYS[4], member)
  if rank > 0 then
    for _, ahead in ipairs(redis.call('ZRANGE', KEYS[4], 0, rank - 1)) do
      if string.sub(ahead, 1, 1) == 'w' then
        keep_queue()
        return {0, -1}
      end
    end
  end
  leave_queue(member)
  keep_queue()
-- One call sees the common case: no writer, no waiting writer, no queue.
elseif redis.call('EXISTS', KEYS[1], KEYS[3], KEYS[4]) > 0
    and (queue_alive() or redis.call('EXISTS', KEYS[1]) == 1 or writer_waiting()) then
  if already_reading() then
    return {1}
  end
  return {0, recheck_in()}
end
-- Each reader pushes the readers' key's expiry ahead, so with no writer and no renewal the
-- leases of crashed readers would stay as long as others keep reading: a reader prunes them.
-- No readers' key (-2), nothing to prune; a prune that empties the key deletes it, and with it
-- the expiry read before.
local left = redis.call('PTTL', KEYS[2])
if left ~= -2 and redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) > 0 then
  left = nil
end
redis.call('ZADD', KEYS[2], now + ttl, token)
cover(2, ttl, left)
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[4]) == 1 then
  -- Readers queued right behind this one may come in as well.
  redis.call('PUBLISH', ARGV[5], '')
end
return {1}
