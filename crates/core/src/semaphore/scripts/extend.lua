-- Renews the lease of ARGV[1]'s permits to ARGV[2] ms from now, if it still holds them.
-- Returns 1 if renewed, 0 if its lease had run out or it held nothing.
local state = holders_state(ARGV[1], EXPIRES, RECLAIM_AT)
if not state[1] then
  return 0
end
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('HSET', KEYS[2], RECLAIM_AT, reclaim_at_with(now + ttl, state[3]))
cover(ttl, state[2])
return 1
