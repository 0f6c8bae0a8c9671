-- Take up to `limit` due members of a schedule under a fresh lease.
-- A claimed member's score moves to the lease's end, so no other consumer sees it until then.
--
-- KEYS[1] due           the schedule's sorted set (member -> due time, ms)
-- KEYS[2] leases        hash member -> the claim token holding it
-- KEYS[3] wake          the schedule's wake list, emptied when this claim took every member due
--                       (the wake-ups pushed before it are answered by it); absent: left alone
-- ARGV[1] now_ms
-- ARGV[2] limit         at most this many members
-- ARGV[3] lease_ms      how long the claim holds
-- ARGV[4] token_prefix  unique per call; each member's token is this plus its position
-- Returns {member, token, due_ms, member, token, due_ms, ...} (empty when nothing is due); due_ms
-- is the score the member had, when it fell (or falls) due.
local due, leases = KEYS[1], KEYS[2]
local now_ms, limit, lease_ms, token_prefix =
  tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]

local found = redis.call('ZRANGEBYSCORE', due, '-inf', now_ms, 'WITHSCORES', 'LIMIT', 0, limit)
local out = {}
local until_ms = now_ms + lease_ms
for i = 1, #found, 2 do
  local m = found[i]
  local token = token_prefix .. ((i + 1) / 2)
  redis.call('ZADD', due, until_ms, m)
  redis.call('HSET', leases, m, token)
  out[#out + 1] = m
  out[#out + 1] = token
  out[#out + 1] = found[i + 1]
end
if KEYS[3] and #found < 2 * limit then redis.call('DEL', KEYS[3]) end
return out
