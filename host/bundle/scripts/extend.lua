-- dlock extend: compare-and-expire.
--
-- KEYS[1]  the lock key
-- ARGV[1]  the caller's token
-- ARGV[2]  the new lease in milliseconds from now (a positive integer)
--
-- Returns (integer):
--   1   the key held ARGV[1]; its TTL is now ARGV[2] ms
--   0   the key is absent, holds another token, or holds a value of another type: nothing was
--       changed
if redis.pcall('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
