-- Drop the handled heads of a claimed member's list, renew the lease and return the next items:
-- a consumer working a member's items several at a time pops and peeks in one round trip.
--
-- KEYS[1] due             the schedule's sorted set
-- KEYS[2] leases          hash member -> claim token
-- KEYS[3] list            the member's FIFO list
-- ARGV[1] member
-- ARGV[2] token           the claim's token
-- ARGV[3] lease_until_ms  the renewed lease's end
-- ARGV[4] limit           at most this many next items returned
-- ARGV[5..] handled       the items the caller handled, oldest first: each is popped only while
--                         it is still the head (the first that is not stops the popping)
-- Returns the list's next items, oldest first (at most `limit`; empty: the member was given
-- back, as release.lua does), or -1 when the token no longer holds the member.
local due, leases, list = KEYS[1], KEYS[2], KEYS[3]
local member, token, lease_until_ms, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])

if redis.call('HGET', leases, member) ~= token then return -1 end
for i = 5, #ARGV do
  if redis.call('LINDEX', list, 0) ~= ARGV[i] then break end
  redis.call('LPOP', list)
end
local items = redis.call('LRANGE', list, 0, limit - 1)
if #items == 0 then
  redis.call('HDEL', leases, member)
  redis.call('ZREM', due, member)
else
  redis.call('ZADD', due, lease_until_ms, member)
end
return items
