-- Renews the lease of ARGV[1]'s permits to ARGV[2] ms from now, if it still holds them.
-- Returns 1 if renewed, 0 if its lease had run out or it held nothing.
reclaim_expired()
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
cover(tonumber(ARGV[2]), redis.call('HGET', KEYS[2], EXPIRES))
return 1
