-- Finalize a room session in one round trip, from the session as the caller last read it: an
-- optimistic transaction whose read is already done. The caller built the end's writes from that
-- read (the same writes the WATCH path of ending.py builds); they are applied only while the
-- session hash is still exactly as read, field for field. Otherwise nothing is written and the
-- caller reads the session afresh (WATCH, read, MULTI/EXEC).
-- With a timer's claim, the timer is given back in the same step (as release.lua does for a
-- member without a list: lease dropped, member unscheduled).
--
-- KEYS[1] room         the room's session hash
-- KEYS[2] due          the timers schedule's sorted set
-- KEYS[3] leases       the timers schedule's lease hash
-- ARGV[1] fields       how many field/value pairs the session had when read (n)
-- ARGV[2..2n+1]        those pairs
-- ARGV[2n+2] member    the firing timer's schedule member ('' = no timer to release)
-- ARGV[2n+3] token     its claim's token (a consumer whose lease was taken over is fenced out)
-- ARGV[2n+4] writes    the writes, a block (worker/staged.py: a msgpack array of commands)
-- Returns 1 when the writes were applied, 0 when the session was not as read (nothing written).
local room, due, leases = KEYS[1], KEYS[2], KEYS[3]
local n = tonumber(ARGV[1])
local FIRST_PAIR = 2

local read = {}
for i = FIRST_PAIR, FIRST_PAIR + 2 * n - 1, 2 do read[ARGV[i]] = ARGV[i + 1] end
local now = redis.call('HGETALL', room)
if #now ~= 2 * n then return 0 end
for i = 1, #now, 2 do
  if read[now[i]] ~= now[i + 1] then return 0 end
end

local at = FIRST_PAIR + 2 * n
local member, token = ARGV[at], ARGV[at + 1]
for _, command in ipairs(cmsgpack.unpack(ARGV[at + 2])) do redis.call(unpack(command)) end
if member ~= '' and redis.call('HGET', leases, member) == token then
  redis.call('HDEL', leases, member)
  redis.call('ZREM', due, member)
end
return 1
