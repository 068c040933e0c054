-- dlock semaphore_count: how many permits of a counting semaphore are held.
--
-- KEYS[1]  the semaphore key (see semaphore_acquire.lua)
--
-- Returns (array of two integers, or an integer):
--   {held, ms}  held: the permits whose lease has not ended; ms: until the first of those
--               leases ends (-1: none is held)
--   -1          the key holds a value of another type, or a sorted set whose members are not
--               dlock permits (its earliest member is checked, as semaphore_acquire does)
local key = KEYS[1]
-- ZRANGE fails on a key of another type, and is empty when the key is gone.
local earliest = redis.pcall('ZRANGE', key, 0, 0)
if earliest.err then
  return -1
end
if not earliest[1] then
  return {0, -1}
end
if not string.find(earliest[1], '^[^:]+:%d+$') then
  return -1
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local held = redis.call('ZCOUNT', key, '(' .. now, '+inf')
if held == 0 then
  return {0, -1}
end
local first = redis.call('ZRANGEBYSCORE', key, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
return {held, tonumber(first[2]) - now}
