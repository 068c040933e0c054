-- dlock extend: compare-and-expire.
--
-- KEYS[1]  the lock key
-- ARGV[1]  the caller's token
-- ARGV[2]  the new lease in milliseconds from now (a positive integer)
--
-- Returns (integer):
--   1   the key held ARGV[1]; its TTL is now ARGV[2] ms
--   0   the key does not exist (the lease ran out, or someone deleted it): nothing was changed
--   -1  the key holds another value (another owner's token, or a value of another type):
--       nothing was changed
local current = redis.pcall('GET', KEYS[1])
if current == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if current then
  return -1
end
return 0
