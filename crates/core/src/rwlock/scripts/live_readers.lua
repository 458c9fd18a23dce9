-- Counts the readers whose lease still runs, by Redis's clock, for operators' listings.
-- KEYS: readers' sorted sets of read-write locks (token -> end of its lease, ms).
-- Returns one count per key.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local counts = {}
for i = 1, #KEYS do
  counts[i] = redis.call('ZCOUNT', KEYS[i], '(' .. now, '+inf')
end
return counts
