-- dlock semaphore_extend: renew the leases of the caller's permits of a counting semaphore.
--
-- KEYS[1]  the semaphore key (see semaphore_acquire.lua)
-- ARGV[1]  the caller's token
-- ARGV[2]  the new lease in milliseconds from now (a positive integer)
-- ARGV[3]  how many permits the caller took (a positive integer)
--
-- Returns (integer):
--   1   the caller's permits were held; their leases now end ARGV[2] ms from now, and the
--       set lasts at least as long
--   0   they are gone, or their lease has ended: nothing was changed
--   -1  the key holds a value of another type: nothing was changed
local key, token = KEYS[1], ARGV[1]
-- ZSCORE fails on a key of another type.
local ends = redis.pcall('ZSCORE', key, token .. ':1')
if type(ends) == 'table' and ends.err then
  return -1
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if not ends or tonumber(ends) <= now then
  return 0
end
local lease = now + tonumber(ARGV[2])
local scored = {}
for i = 1, tonumber(ARGV[3]) do
  scored[#scored + 1] = lease
  scored[#scored + 1] = token .. ':' .. i
end
redis.call('ZADD', key, 'XX', unpack(scored))
-- As semaphore_acquire: the set's expiry is pushed out to the new lease's end when later.
local pttl = redis.call('PTTL', key)
if pttl == -1 then
  redis.call('PEXPIREAT', key, redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
elseif pttl < tonumber(ARGV[2]) then
  redis.call('PEXPIREAT', key, lease)
end
return 1
