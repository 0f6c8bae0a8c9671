-- Read the head delivery of a (room, URL) queue with its record; when it is pending and its
-- queue open, its body too (kept in the record in pieces, or in the event's body key), and mark
-- the record in flight (so a crash during the attempt is noticed and logged).
--
-- KEYS[1] list           the queue's FIFO of delivery ids
-- KEYS[2] gone           the queue's 410-Gone flag
-- ARGV[1] record_prefix  delivery record key without the id (the id is appended)
-- ARGV[2] body_prefix    event body key without the event id
-- ARGV[3] now            unix seconds, stored as `inflight`
-- ARGV[4] url_prefix     webhook URL key without the URL's hash (a record names its URL by
--                        its hash, `uh`; the record returned has its `url`)
-- Returns false (empty queue) | {id, record} (not pending) | {id, record, 1} (queue gone) |
-- {id, record, 0} (body expired) | {id, record, 0, body} (marked in flight).
local list, gone = KEYS[1], KEYS[2]
local record_prefix, body_prefix, now, url_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local did = redis.call('LINDEX', list, 0)
if not did then return false end
local rkey = record_prefix .. did
local all = redis.call('HGETALL', rkey)
-- The record without the pieces of a body kept in it (b0, b1, …), which are joined in order.
local rec, pieces, state, event_id, url, uh = {}, {}, nil, nil, nil, nil
for i = 1, #all, 2 do
  local field, value = all[i], all[i + 1]
  local piece = string.match(field, '^b(%d+)$')
  if piece then
    pieces[tonumber(piece) + 1] = value
  else
    rec[#rec + 1] = field
    rec[#rec + 1] = value
    if field == 'state' then state = value end
    if field == 'event_id' then event_id = value end
    if field == 'url' then url = value end
    if field == 'uh' then uh = value end
  end
end
if not url and uh then
  url = redis.call('GET', url_prefix .. uh)
  if url then
    rec[#rec + 1] = 'url'
    rec[#rec + 1] = url
  end
end
if state ~= 'pending' then return {did, rec} end
if redis.call('EXISTS', gone) == 1 then return {did, rec, 1} end
local body
if #pieces > 0 then body = table.concat(pieces) else body = redis.call('GET', body_prefix .. event_id) end
-- Without its URL (its key expired) it cannot be sent either: dead as an expired body is.
if not body or (uh and not url) then return {did, rec, 0} end
redis.call('HSET', rkey, 'inflight', now)
return {did, rec, 0, body}
