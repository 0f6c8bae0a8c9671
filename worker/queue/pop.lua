-- Drop the handled head of a claimed member's list and renew the claim's lease.
--
-- KEYS[1] due             the schedule's sorted set
-- KEYS[2] leases          hash member -> claim token
-- KEYS[3] list            the member's FIFO list
-- ARGV[1] member
-- ARGV[2] token           the claim's token
-- ARGV[3] expected_head   the item the caller handled (popped only if it is still the head)
-- ARGV[4] lease_until_ms  the renewed lease's end
-- Returns the list's length after the pop, or -1 when the token no longer holds the member.
local due, leases, list = KEYS[1], KEYS[2], KEYS[3]
local member, token, expected_head, lease_until_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

if redis.call('HGET', leases, member) ~= token then return -1 end
if redis.call('LINDEX', list, 0) == expected_head then redis.call('LPOP', list) end
redis.call('ZADD', due, lease_until_ms, member)
return redis.call('LLEN', list)
