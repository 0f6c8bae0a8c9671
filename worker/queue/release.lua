-- Give a claimed member back: due at `next_ms`, or now while its list has items, else removed.
--
-- KEYS[1] due        the schedule's sorted set
-- KEYS[2] leases     hash member -> claim token
-- KEYS[3] list       the member's FIFO list (it may not exist)
-- KEYS[4] wake       the schedule's wake list
-- ARGV[1] member
-- ARGV[2] token      the claim's token (a late consumer whose lease was taken over is fenced out)
-- ARGV[3] next_ms    when the member falls due again ('' = decide by its list)
-- ARGV[4] now_ms
-- ARGV[5] wake_keep  how many wake entries the wake list keeps
-- Returns 1 when released, 0 when the token no longer holds the member.
local due, leases, list, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local member, token, next_ms, now_ms, wake_keep = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local BY_LIST = ''

if redis.call('HGET', leases, member) ~= token then return 0 end
redis.call('HDEL', leases, member)
if next_ms ~= BY_LIST then
  redis.call('ZADD', due, next_ms, member)
elseif redis.call('LLEN', list) > 0 then
  redis.call('ZADD', due, now_ms, member)
else
  redis.call('ZREM', due, member)
  return 1
end
-- A consumer may be asleep until the lease's end: the member is due sooner now, so wake it.
redis.call('RPUSH', wake, 1)
redis.call('LTRIM', wake, -tonumber(wake_keep), -1)
return 1
