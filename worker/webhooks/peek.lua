-- Read the head delivery of a (room, URL) queue with its record; when it is pending and its
-- queue open, its body too, and mark the record in flight (so a crash during the attempt is
-- noticed and logged).
--
-- KEYS[1] list           the queue's FIFO of delivery ids
-- KEYS[2] gone           the queue's 410-Gone flag
-- ARGV[1] record_prefix  delivery record key without the id (the id is appended)
-- ARGV[2] body_prefix    event body key without the event id
-- ARGV[3] now            unix seconds, stored as `inflight`
-- Returns false (empty queue) | {id, record} (not pending) | {id, record, 1} (queue gone) |
-- {id, record, 0} (body expired) | {id, record, 0, body} (marked in flight).
local list, gone = KEYS[1], KEYS[2]
local record_prefix, body_prefix, now = ARGV[1], ARGV[2], ARGV[3]

local did = redis.call('LINDEX', list, 0)
if not did then return false end
local rkey = record_prefix .. did
local rec = redis.call('HGETALL', rkey)
local state, event_id
for i = 1, #rec, 2 do
  if rec[i] == 'state' then state = rec[i + 1] end
  if rec[i] == 'event_id' then event_id = rec[i + 1] end
end
if state ~= 'pending' then return {did, rec} end
if redis.call('EXISTS', gone) == 1 then return {did, rec, 1} end
local body = redis.call('GET', body_prefix .. event_id)
if not body then return {did, rec, 0} end
redis.call('HSET', rkey, 'inflight', now)
return {did, rec, 0, body}
