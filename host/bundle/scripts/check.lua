-- dlock check: how long the key has left.
--
-- KEYS[1]  the lock key
--
-- Returns (integer), as PTTL does:
--   n >= 0  the key exists and expires in n milliseconds
--   -1      the key exists and has no expiry
--   -2      the key does not exist
return redis.call('PTTL', KEYS[1])
