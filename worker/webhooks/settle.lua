-- Log an attempt (if any) and move a pending delivery on, atomically.
--
-- KEYS[1] record         the delivery's hash (its `log` field is the attempt log)
-- KEYS[2] counts         hash state -> number of deliveries in it
-- KEYS[3] pending_index  sorted set of pending deliveries
-- KEYS[4] dead_index     sorted set of dead deliveries
-- KEYS[5] gone           the queue's 410-Gone flag
-- ARGV[1] id             the delivery id
-- ARGV[2] entry          the attempt's log line ('' = no attempt was made)
-- ARGV[3] attempts       the attempt count to store ('' = keep)
-- ARGV[4] state          'pending' (a retry), 'delivered' or 'dead'
-- ARGV[5] reason         why it is dead ('' = none)
-- ARGV[6] next_at        unix seconds of the next attempt, for a retry ('' = none)
-- ARGV[7] now            unix seconds, stored as `fin` (ms after the id's time)
-- ARGV[8] ttl            seconds the record is kept
-- ARGV[9] gone_ttl       seconds the queue stays gone ('' = do not set the flag)
-- Returns -1 (no such record), 0 (already finished: only the log line was added) or 1.
-- A finished record keeps what the deliveries API shows: its queue and attempt count go.
local record, counts, pending_index, dead_index, gone = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, entry, attempts, state, reason, next_at, now, ttl, gone_ttl =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local NONE = ''
-- A finished record keeps its finishing time as `fin`, ms after the time in its id
-- (`dlv_` and 14 hex digits of microseconds); an id of another shape keeps `finished`.
local function finished_field(did, at)
  local us = string.match(did, '^dlv_(%x%x%x%x%x%x%x%x%x%x%x%x%x%x)')
  if not us then return 'finished', at end
  return 'fin', string.format('%d', math.floor(tonumber(at) * 1000 - tonumber(us, 16) / 1000 + 0.5))
end

if redis.call('EXISTS', record) == 0 then return -1 end
if entry ~= NONE then
  local log = redis.call('HGET', record, 'log')
  if log then entry = log .. '\n' .. entry end
  redis.call('HSET', record, 'log', entry)
end
if redis.call('HGET', record, 'state') ~= 'pending' then return 0 end
if attempts ~= NONE then redis.call('HSET', record, 'attempts', attempts) end
redis.call('HDEL', record, 'inflight')
if state == 'pending' then
  if next_at ~= NONE then redis.call('HSET', record, 'next_at', next_at) end
else
  local fin, at = finished_field(id, now)
  redis.call('HSET', record, 'state', state, fin, at)
  if reason ~= NONE then redis.call('HSET', record, 'reason', reason) end
  redis.call('HDEL', record, 'next_at', 'held', 'queue', 'attempts')
  redis.call('HINCRBY', counts, 'pending', -1)
  redis.call('HINCRBY', counts, state, 1)
  redis.call('ZREM', pending_index, id)
  if state == 'dead' then redis.call('ZADD', dead_index, 0, id) end
end
if gone_ttl ~= NONE then redis.call('SET', gone, '1', 'EX', gone_ttl) end
redis.call('EXPIRE', record, ttl)
return 1
