-- Begin a timer's end of a room session in one round trip: the checks a timer makes when it fires
-- and the move to `ending`, with the session as it was for the rest of the end.
-- Compare-and-set on (sid, state, nobody joined), as transition.lua does.
--
-- KEYS[1] room         the room's session hash
-- ARGV[1] sid          the LiveKit session the timer was armed for
-- ARGV[2] now          unix seconds, kept as state_since
-- ARGV[3] end_reason   why the session ends
-- ARGV[4] unjoined     '1' = only while no participant ever joined (an empty timeout)
-- ARGV[5..] from_states  the states the move is allowed from
-- Returns the session hash before the move (field, value, ...), or false when the session, its
-- state or its joined count did not match.
local room = KEYS[1]
local sid, now, end_reason, unjoined = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local FROM_STATES = 5

if redis.call('HGET', room, 'sid') ~= sid then return false end
if unjoined == '1' and (tonumber(redis.call('HGET', room, 'joined')) or 0) > 0 then
  return false
end
local st = redis.call('HGET', room, 'state')
for i = FROM_STATES, #ARGV do
  if st == ARGV[i] then
    local record = redis.call('HGETALL', room)
    redis.call('HSET', room, 'state', 'ending', 'state_since', now, 'end_reason', end_reason)
    return record
  end
end
return false
