-- Drop the handled head of a claimed member's list and renew the claim's lease.
--
-- KEYS[1] due             the schedule's sorted set
-- KEYS[2] leases          hash member -> claim token
-- KEYS[3] list            the member's FIFO list
-- ARGV[1] member
-- ARGV[2] token           the claim's token
-- ARGV[3] expected_head   the item the caller handled (popped only if it is still the head)
-- ARGV[4] lease_until_ms  the renewed lease's end
-- ARGV[5] with_next       '1' = also return the new head, and give the member back (as
--                         release.lua does) when the list is now empty: one round trip for both
-- Returns the list's length after the pop (with `with_next`: {length, new head or false}), or
-- -1 when the token no longer holds the member.
local due, leases, list = KEYS[1], KEYS[2], KEYS[3]
local member, token, expected_head, lease_until_ms, with_next =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

if redis.call('HGET', leases, member) ~= token then return -1 end
if redis.call('LINDEX', list, 0) == expected_head then redis.call('LPOP', list) end
redis.call('ZADD', due, lease_until_ms, member)
if with_next == '1' then
  local head = redis.call('LINDEX', list, 0)
  if not head then
    redis.call('HDEL', leases, member)
    redis.call('ZREM', due, member)
  end
  return {redis.call('LLEN', list), head}
end
return redis.call('LLEN', list)
