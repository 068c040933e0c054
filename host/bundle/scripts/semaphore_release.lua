-- dlock semaphore_release: give back the caller's permits of a counting semaphore.
--
-- KEYS[1]  the semaphore key (see semaphore_acquire.lua)
-- ARGV[1]  the caller's token
-- ARGV[2]  how many permits the caller took (a positive integer)
--
-- Returns (integer):
--   1   the caller's permits were held and are removed
--   0   they are gone (their lease ran out), or their lease has ended: any left are removed;
--       nothing else was changed
--   -1  the key holds a value of another type: nothing was changed
--
-- The set is deleted once it holds no permit.
local key, token = KEYS[1], ARGV[1]
-- ZSCORE fails on a key of another type, and is nil when the key is gone.
local ends = redis.pcall('ZSCORE', key, token .. ':1')
if type(ends) == 'table' and ends.err then
  return -1
end
if not ends then
  return 0
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local members = {}
for i = 1, tonumber(ARGV[2]) do
  members[i] = token .. ':' .. i
end
-- Redis deletes the set with its last member.
redis.call('ZREM', key, unpack(members))
if tonumber(ends) <= now then
  return 0
end
return 1
