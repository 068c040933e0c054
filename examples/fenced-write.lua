-- A fenced resource: a write is accepted only with a fencing token greater than every token
-- the resource has accepted before, so a lock holder that lost its lock (paused past its TTL,
-- partitioned, or fooled by a Redis restart) cannot overwrite what a newer holder wrote.
--
-- Run it on the store that holds the resource (here a Redis list), passing the fence that
-- dlock returned with the lock (`--fence`, `LockInfo::fence`):
--
--   EVAL <this script> 2 <resource key> <resource key>:max-fence <fence> <value>
--
-- KEYS[1]  the resource (a list of accepted values)
-- KEYS[2]  the highest fence the resource has accepted
-- ARGV[1]  the writer's fence (a positive integer)
-- ARGV[2]  the value to write
--
-- Returns (integer):
--   1   accepted: the value was appended and the fence recorded
--   0   rejected: the fence is not greater than one already accepted (a stale holder)
local fence = tonumber(ARGV[1])
if not fence then
  return redis.error_reply('the fence must be an integer')
end
local highest = tonumber(redis.call('GET', KEYS[2]) or '0')
if fence <= highest then
  return 0
end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[1], ARGV[2])
return 1
