-- Move a room session from one of some states to another, if it is still the same session.
-- Compare-and-set on (sid, state): other fields may change meanwhile (a participant joining)
-- without failing the move, which a WATCH on the whole hash would.
--
-- KEYS[1] room         the room's session hash
-- ARGV[1] sid          the LiveKit session the caller means
-- ARGV[2] to_state     the state to move to
-- ARGV[3] now          unix seconds, kept as state_since
-- ARGV[4] end_reason   why the session ends ('' = keep the field as it is)
-- ARGV[5..] from_states  the states the move is allowed from
-- Returns the state it left, or false when the session or its state did not match.
local room = KEYS[1]
local sid, to_state, now, end_reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local FROM_STATES = 5

if redis.call('HGET', room, 'sid') ~= sid then return false end
local st = redis.call('HGET', room, 'state')
for i = FROM_STATES, #ARGV do
  if st == ARGV[i] then
    redis.call('HSET', room, 'state', to_state, 'state_since', now)
    if end_reason ~= '' then redis.call('HSET', room, 'end_reason', end_reason) end
    return st
  end
end
return false
