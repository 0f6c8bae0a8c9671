-- File a verified LiveKit event on its room's FIFO of the `in` schedule, once per event id.
--
-- KEYS[1] seen     the event id's seen-marker
-- KEYS[2] due      the `in` schedule's sorted set
-- KEYS[3] list     the room's FIFO list of that schedule
-- KEYS[4] wake     the schedule's wake list
-- ARGV[1] ttl      seconds the seen-marker lives
-- ARGV[2] body     the event as LiveKit sent it
-- ARGV[3] now_ms   when the room's queue falls due (if it is not scheduled already)
-- ARGV[4] member   the room's member name on the schedule (its room name)
-- Returns 1 when filed, 0 when this event id was seen already.
local seen, due, list, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ttl, body, now_ms, member = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local WAKE_KEEP = 64

if redis.call('SET', seen, 1, 'NX', 'EX', ttl) == false then return 0 end
redis.call('RPUSH', list, body)
redis.call('ZADD', due, 'NX', now_ms, member)
redis.call('RPUSH', wake, 1)
redis.call('LTRIM', wake, -WAKE_KEEP, -1)
return 1
