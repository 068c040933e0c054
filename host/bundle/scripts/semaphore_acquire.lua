-- dlock semaphore_acquire: take ARGV[4] of a counting semaphore's ARGV[3] permits, in one
-- atomic step.
--
-- KEYS[1]  the semaphore key: a sorted set of the permits held, each member a holder's token,
--          ':' and the permit's number (1 to the count it took), scored by when its lease ends
--          on Redis's clock (TIME, in milliseconds); the set expires no sooner than its
--          longest lease, and no later than the longest lease it was given
-- KEYS[2]  optional: the fence counter key (same cluster slot as KEYS[1]); present only for
--          fenced acquisitions
-- ARGV[1]  the caller's token
-- ARGV[2]  the lease in milliseconds (a positive integer)
-- ARGV[3]  the limit: the most permits held at once (a positive integer)
-- ARGV[4]  how many permits to take (a positive integer, at most ARGV[3])
--
-- Every call first removes the permits whose lease has ended.
--
-- Returns (integer):
--   0   fewer than ARGV[4] permits are free: nothing else was changed
--   -1  the key holds a value of another type, or a sorted set whose members are not dlock
--       permits (another library's semaphore, say): it is not a dlock semaphore; nothing was
--       changed
--   1   acquired, unfenced
--   n   acquired, fenced: n (1 <= n <= 9 * 10^15) is the counter's value after this
--       acquisition; one counter per semaphore, so fences increase across all its permits
--
-- When the set already holds the caller's first permit (a retry of an attempt whose reply was
-- lost), its leases are renewed and the acquisition is reported again, with the counter's
-- current value when fenced.
--
-- Errors (nothing written): ARGV[4] above ARGV[3]; the fence counter is not an integer, is
-- missing when a retried acquisition asks for its value again, or has reached 9 * 10^15.
local key, token = KEYS[1], ARGV[1]
local ttl, limit, count = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local fenced = #KEYS == 2
local MAX_FENCE = 9000000000000000
if count > limit then
  return redis.error_reply('dlock: ' .. count .. ' permits asked of a semaphore of ' .. limit)
end
-- ZSCORE fails on a key of another type: nothing is written before it.
local mine = redis.pcall('ZSCORE', key, token .. ':1')
if type(mine) == 'table' and mine.err then
  return -1
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
-- A member of another form makes the set no semaphore: the earliest is checked always, every
-- ended one before it is removed (most calls find nothing ended and stop at the earliest).
local function permit(member)
  return string.find(member, '^[^:]+:%d+$') ~= nil
end
local earliest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
if earliest[1] and not permit(earliest[1]) then
  return -1
end
if earliest[2] and tonumber(earliest[2]) <= now then
  local ended = redis.call('ZRANGEBYSCORE', key, '-inf', now)
  for _, member in ipairs(ended) do
    if not permit(member) then
      return -1
    end
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if mine and tonumber(mine) <= now then
    mine = false
  end
end

local function fence_now()
  local fence = tonumber(redis.call('GET', KEYS[2]))
  if not fence or fence < 1 then
    return nil, redis.error_reply('dlock: fence counter ' .. KEYS[2] .. ' is missing or not a positive integer')
  end
  return fence
end
local function exhausted()
  return redis.error_reply('dlock: fence counter ' .. KEYS[2] .. ' has reached 9 * 10^15, the last fence dlock hands out')
end
-- Scores are lease ends. The set expires no sooner than its longest lease: its expiry is
-- pushed out to a new lease's end when that is later (a key without expiry gets its longest
-- lease's end). `renew` (a retry) only updates the caller's permits already there: a retry
-- never takes more than it first did.
local function hold(ends, renew)
  local scored = {renew and 'XX' or 'NX'}
  for i = 1, count do
    scored[#scored + 1] = ends
    scored[#scored + 1] = token .. ':' .. i
  end
  redis.call('ZADD', key, unpack(scored))
  local pttl = redis.call('PTTL', key)
  if pttl == -1 then
    redis.call('PEXPIREAT', key, redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
  elseif pttl < ttl then
    redis.call('PEXPIREAT', key, ends)
  end
end

if mine then
  local fence = 1
  if fenced then
    local err
    fence, err = fence_now()
    if not fence then
      return err
    end
    if fence > MAX_FENCE then
      return exhausted()
    end
  end
  hold(now + ttl, true)
  return fence
end
if redis.call('ZCARD', key) + count > limit then
  return 0
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
hold(now + ttl, false)
return fence
