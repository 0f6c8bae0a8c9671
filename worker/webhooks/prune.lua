-- Remove one finished delivery and its index entries, keeping the counts right.
--
-- KEYS[1] record         the delivery's hash
-- KEYS[2] attempt_log    its list of attempts, as versions before the `log` field kept them
-- KEYS[3] all_index      sorted set of every delivery
-- KEYS[4] room_index     sorted set of the room's deliveries
-- KEYS[5] pending_index  sorted set of pending deliveries
-- KEYS[6] dead_index     sorted set of dead deliveries
-- KEYS[7] counts         hash state -> number of deliveries in it
-- KEYS[8] url_index      sorted set of the URL's deliveries (optional)
-- ARGV[1] id             the delivery id
-- Returns 0 (pending: kept), 1 (removed and uncounted) or 2 (its record had expired already:
-- the index entries were removed).
local record, attempt_log, all_index, room_index, pending_index, dead_index, counts =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local id = ARGV[1]

local state = redis.call('HGET', record, 'state')
if state == 'pending' then return 0 end
redis.call('DEL', record, attempt_log)
redis.call('ZREM', all_index, id)
redis.call('ZREM', room_index, id)
redis.call('ZREM', pending_index, id)
redis.call('ZREM', dead_index, id)
if KEYS[8] then redis.call('ZREM', KEYS[8], id) end
if state then
  redis.call('HINCRBY', counts, state, -1)
  return 1
end
return 2
