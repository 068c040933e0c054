-- dlock release: compare-and-delete, and signal one waiter.
--
-- KEYS[1]  the lock key
-- KEYS[2]  optional, with KEYS[3]: the lock's signal list (same cluster slot)
-- KEYS[3]  optional, with KEYS[2]: the lock's waiters' mark (same cluster slot)
-- ARGV[1]  the caller's token
--
-- Returns (integer):
--   1   the key held ARGV[1] and was deleted
--   0   the key does not exist (the lease ran out, or someone deleted it): nothing was changed
--   -1  the key holds another value (another owner's token, or a value of another type):
--       nothing was changed
--
-- When the key was deleted and the waiters' mark exists, the signal list holds one signal
-- (pushed unless one is pending already) and expires with the mark: the first waiter blocked
-- on it, or the next to block, takes it and tries again.
local current = redis.pcall('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if KEYS[3] then
    local waiting = redis.call('PTTL', KEYS[3])
    if waiting > 0 then
      if redis.pcall('LLEN', KEYS[2]) == 0 then
        redis.pcall('RPUSH', KEYS[2], '1')
      end
      redis.pcall('PEXPIRE', KEYS[2], waiting)
    end
  end
  return 1
end
if current then
  return -1
end
return 0
