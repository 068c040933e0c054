-- dlock release: compare-and-delete, and signal one waiter.
--
-- KEYS[1]  the lock key
-- ARGV[1]  the caller's token
-- ARGV[2]  optional, `quiet`: signal no waiter (the component's own give-backs: a waiting
--          caller's own waiters' mark would wake it at once)
--
-- Returns (integer):
--   1   the key held ARGV[1] and was deleted
--   0   the key does not exist (the lease ran out, or someone deleted it): nothing was changed
--   -1  the key holds another value (another owner's token, or a value of another type):
--       nothing was changed
--
-- When the key was deleted and its waiters' mark exists, its signal list holds one signal
-- (pushed unless one is pending already) and expires with the mark: the first waiter blocked
-- on it, or the next to block, takes it and tries again. The two companion keys are named
-- here from KEYS[1] as dlock_contract::companion_key names them (`{KEY}:signal`, or
-- `KEY::signal` when KEY has a hash tag; none when KEY has a '}' but no hash tag), so they
-- are in KEYS[1]'s cluster slot and the caller passes one key, not three. A companion this
-- caller may not touch (an ACL) leaves the waiters to their polling; the release stands.
local function companion(suffix)
  local key = KEYS[1]
  local open = string.find(key, '{', 1, true)
  if open then
    local close = string.find(key, '}', open + 1, true)
    if close and close > open + 1 then
      return key .. ':' .. suffix
    end
  end
  if string.find(key, '}', 1, true) then
    return nil
  end
  return '{' .. key .. '}' .. suffix
end

local current = redis.pcall('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('DEL', KEYS[1])
  local waiters = not ARGV[2] and companion(':waiters')
  if waiters then
    local waiting = redis.pcall('PTTL', waiters)
    if type(waiting) == 'number' and waiting > 0 then
      local signal = companion(':signal')
      if redis.pcall('LLEN', signal) == 0 then
        redis.pcall('RPUSH', signal, '1')
      end
      redis.pcall('PEXPIRE', signal, waiting)
    end
  end
  return 1
end
if current then
  return -1
end
return 0
