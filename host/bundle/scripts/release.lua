-- dlock release: compare-and-delete.
--
-- KEYS[1]  the lock key
-- ARGV[1]  the caller's token
--
-- Returns (integer):
--   1   the key held ARGV[1] and was deleted
--   0   the key is absent, holds another token, or holds a value of another type: nothing was
--       changed
if redis.pcall('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
