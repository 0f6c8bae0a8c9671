-- Finish the head delivery of a claimed (room, URL) queue and read the next, in one round trip:
-- settle.lua's step (log the attempt, move the delivery on), then pop.lua's (drop the head,
-- renew the lease), then peek.lua's (the new head, marked in flight), or, when the queue is now
-- empty, release.lua's (the queue given back and unscheduled). For a delivery that is
-- delivered or dead; a retry settles alone and gives the queue back. Keep the three steps as
-- their own scripts do them (tests/test_lua_scripts.py compares them).
--
-- KEYS[1] record         the finished delivery's hash (its `log` field is the attempt log)
-- KEYS[2] counts         hash state -> number of deliveries in it
-- KEYS[3] pending_index  sorted set of pending deliveries
-- KEYS[4] dead_index     sorted set of dead deliveries
-- KEYS[5] gone           the queue's 410-Gone flag
-- KEYS[6] due            the delivery schedule's sorted set
-- KEYS[7] leases         hash member -> claim token
-- KEYS[8] list           the queue's FIFO of delivery ids
-- ARGV[1] id             the finished delivery's id
-- ARGV[2] entry          the attempt's log line ('' = no attempt was made)
-- ARGV[3] attempts       unused (a finished record keeps no count); settle.lua's place
-- ARGV[4] state          'delivered' or 'dead' ('' = nothing to settle: the head was finished)
-- ARGV[5] reason         why it is dead ('' = none)
-- ARGV[6] now            unix seconds, stored as `fin` (ms after the id's time) and as the
--                        next one's `inflight`
-- ARGV[7] ttl            seconds the record is kept
-- ARGV[8] gone_ttl       seconds the queue stays gone ('' = do not set the flag)
-- ARGV[9] member         the queue's schedule member
-- ARGV[10] token         the claim's token
-- ARGV[11] lease_until   the renewed lease's end, ms
-- ARGV[12] record_prefix delivery record key without the id
-- ARGV[13] body_prefix   event body key without the event id
-- ARGV[14] url_prefix    webhook URL key without the URL's hash
-- Returns {settled, -1} when the token no longer holds the queue (settled as settle.lua
-- returns), {settled, 0} when the queue is now empty (and released), else {settled, 1, next_id, record
-- [, gone (0/1) [, body]]} as peek.lua returns the new head.
local record, counts, pending_index, dead_index, gone, due, leases, list =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local id, entry, attempts, state, reason, now, ttl, gone_ttl =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local member, token, lease_until, record_prefix, body_prefix, url_prefix =
  ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14]
local NONE = ''
-- A finished record keeps its finishing time as `fin`, ms after the time in its id
-- (`dlv_` and 14 hex digits of microseconds); an id of another shape keeps `finished`.
local function finished_field(did, at)
  local us = string.match(did, '^dlv_(%x%x%x%x%x%x%x%x%x%x%x%x%x%x)')
  if not us then return 'finished', at end
  return 'fin', string.format('%d', math.floor(tonumber(at) * 1000 - tonumber(us, 16) / 1000 + 0.5))
end

-- settle.lua
local settled = 1
if state == NONE then
  settled = 0
elseif redis.call('EXISTS', record) == 0 then
  settled = -1
else
  if entry ~= NONE then
    local log = redis.call('HGET', record, 'log')
    if log then entry = log .. '\n' .. entry end
    redis.call('HSET', record, 'log', entry)
  end
  if redis.call('HGET', record, 'state') ~= 'pending' then
    settled = 0
  else
    redis.call('HDEL', record, 'inflight', 'next_at', 'held', 'queue', 'attempts')
    local fin, at = finished_field(id, now)
    redis.call('HSET', record, 'state', state, fin, at)
    if reason ~= NONE then redis.call('HSET', record, 'reason', reason) end
    redis.call('HINCRBY', counts, 'pending', -1)
    redis.call('HINCRBY', counts, state, 1)
    redis.call('ZREM', pending_index, id)
    if state == 'dead' then redis.call('ZADD', dead_index, 0, id) end
    if gone_ttl ~= NONE then redis.call('SET', gone, '1', 'EX', gone_ttl) end
    redis.call('EXPIRE', record, ttl)
  end
end

-- pop.lua
if redis.call('HGET', leases, member) ~= token then return {settled, -1} end
if redis.call('LINDEX', list, 0) == id then redis.call('LPOP', list) end
redis.call('ZADD', due, lease_until, member)

-- peek.lua
local did = redis.call('LINDEX', list, 0)
if not did then
  -- release.lua, for an empty list
  redis.call('HDEL', leases, member)
  redis.call('ZREM', due, member)
  return {settled, 0}
end
local rkey = record_prefix .. did
local all = redis.call('HGETALL', rkey)
local rec, pieces, next_state, event_id, url, uh = {}, {}, nil, nil, nil, nil
for i = 1, #all, 2 do
  local field, value = all[i], all[i + 1]
  local piece = string.match(field, '^b(%d+)$')
  if piece then
    pieces[tonumber(piece) + 1] = value
  else
    rec[#rec + 1] = field
    rec[#rec + 1] = value
    if field == 'state' then next_state = value end
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
if next_state ~= 'pending' then return {settled, 1, did, rec} end
if redis.call('EXISTS', gone) == 1 then return {settled, 1, did, rec, 1} end
local body
if #pieces > 0 then body = table.concat(pieces) else body = redis.call('GET', body_prefix .. event_id) end
if not body or (uh and not url) then return {settled, 1, did, rec, 0} end
redis.call('HSET', rkey, 'inflight', now)
return {settled, 1, did, rec, 0, body}
