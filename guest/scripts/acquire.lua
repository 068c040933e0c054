-- dlock acquire: take the lock if it is free, in one atomic step.
--
-- KEYS[1]  the lock key; it holds the owner's token as a plain string with a PX expiry
-- KEYS[2]  optional: the fence counter key (same cluster slot as KEYS[1]); present only for
--          fenced acquisitions
-- KEYS[n]  the last key, present exactly when ARGV[3] is: the waiters' mark (same slot)
-- ARGV[1]  the caller's token
-- ARGV[2]  the lease in milliseconds (a positive integer)
-- ARGV[3]  optional: the caller will wait up to this many milliseconds for a release signal
--          if the lock is busy
--
-- Returns (integer, or an array when busy with ARGV[3]):
--   0          the key holds another token (or a string that is not a token): nothing was
--              changed
--   {0, pttl}  the same, when ARGV[3] is given: the waiters' mark now lasts at least ARGV[3]
--              plus a second, so a release in that time signals; pttl is the key's PTTL
--              (milliseconds left, or -1 when it has no expiry)
--   -1         the key holds a value of another type (a hash, a list, ...): it is not a lock;
--              nothing was changed
--   1          acquired, unfenced
--   n          acquired, fenced: n (1 <= n <= 9 * 10^15) is the counter's value after this
--              acquisition
--
-- When the key already holds ARGV[1] (a retry of an attempt whose reply was lost), the lease is
-- renewed and the acquisition is reported again, with the counter's current value when fenced:
-- a retried acquire never reports two different acquisitions or skips a fence value.
--
-- Errors (nothing written): the fence counter is not an integer, is missing when a retried
-- acquisition asks for its value again, or has reached 9 * 10^15: fences stop there, below
-- 2^53, so that every host reads them exactly (Lua's and JavaScript's numbers are doubles, and
-- ioredis 6 misreads integers within 48 of 2^53) rather than hand out a rounded, repeated one.
local fenced = (ARGV[3] and #KEYS == 3) or (not ARGV[3] and #KEYS == 2)
local MAX_FENCE = 9000000000000000
local function exhausted()
  return redis.error_reply('dlock: fence counter ' .. KEYS[2] .. ' has reached 9 * 10^15, the last fence dlock hands out')
end
local current = redis.pcall('GET', KEYS[1])
if type(current) == 'table' and current.err then
  return -1
end
if current == ARGV[1] then
  local fence = 1
  if fenced then
    fence = tonumber(redis.call('GET', KEYS[2]))
    if not fence or fence < 1 then
      return redis.error_reply('dlock: fence counter ' .. KEYS[2] .. ' is missing or not a positive integer')
    end
    if fence > MAX_FENCE then
      return exhausted()
    end
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return fence
end
if current then
  if not ARGV[3] then
    return 0
  end
  local mark = KEYS[#KEYS]
  local lasts = tonumber(ARGV[3]) + 1000
  if redis.call('PTTL', mark) < lasts then
    redis.call('SET', mark, '1', 'PX', lasts)
  end
  return {0, redis.call('PTTL', KEYS[1])}
end
-- The counter first: INCR fails on a non-integer before anything is written.
local fence = 1
if fenced then
  local counter = tonumber(redis.call('GET', KEYS[2]))
  if counter and counter >= MAX_FENCE then
    return exhausted()
  end
  fence = redis.call('INCR', KEYS[2])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return fence
