#!lua
-- The shebang makes Redis refuse the whole script, before it runs, when it is over `maxmemory`
-- (noeviction). Without it Redis checks only the script's first write, and the first write here
-- is a DEL, which is always allowed: every later write would then go through on a full Redis.
-- Claim the create of one room: a new job, unless one is pending or the room is live.
-- A new claim writes the arq job that will create the room in the same script, so no crash can
-- leave a claimed room without its job (worker/rooms/submit.py).
--
-- KEYS[1] room         the room's session hash (rk:room:{room_id})
-- KEYS[2] job          the new create job's hash (rk:job:{job_id})
-- KEYS[3] queued_jobs  sorted set of jobs accepted and not yet finished (score = now_ms)
-- KEYS[4] arq_job      the arq job key to write with a new claim
-- KEYS[5] arq_queue    arq's queue sorted set
-- ARGV[1] job_id       the id the new job gets
-- ARGV[2] request      the validated create request (JSON) the job keeps
-- ARGV[3] event_id     the id `room_created` will carry
-- ARGV[4] now_ms       the time of the claim, in ms
-- ARGV[5] room_id
-- ARGV[6] job_ttl      seconds the job record is kept
-- ARGV[7] arq_payload  the serialized arq job (it may carry other rooms' jobs too)
-- ARGV[8] arq_ttl_ms   its expiry, in ms
-- ARGV[9] arq_score    when arq may run it, in ms
-- ARGV[10] arq_job_id  arq's id of the job
-- Returns {'pending', job_id} | {'exists', room info as stored (packed, or JSON)} |
-- {'ending', ''} | {'new', job_id}.
local room, job, queued_jobs, arq_job, arq_queue = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local job_id, request, event_id, now_ms, room_id, job_ttl =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local arq_payload, arq_ttl_ms, arq_score, arq_job_id = ARGV[7], ARGV[8], ARGV[9], ARGV[10]

local st = redis.call('HGET', room, 'state')
if st == 'queued' or st == 'creating' then
  return {'pending', redis.call('HGET', room, 'job_id')}
end
if st == 'created' or st == 'active' then
  -- LiveKit's room, kept in pieces i0, i1, … (or as `info` by a session written before them).
  local info = redis.call('HGET', room, 'info')
  if not info then
    local pieces = {}
    while true do
      local piece = redis.call('HGET', room, 'i' .. #pieces)
      if not piece then break end
      pieces[#pieces + 1] = piece
    end
    info = table.concat(pieces)
  end
  return {'exists', info}
end
if st == 'ending' then return {'ending', ''} end
redis.call('DEL', room)
redis.call('HSET', room, 'state', 'queued', 'job_id', job_id)
redis.call('HSET', job, 'job_id', job_id, 'room_id', room_id, 'state', 'queued',
  'request', request, 'event_id', event_id, 'attempts', 0, 'created_ms', now_ms)
redis.call('EXPIRE', job, job_ttl)
redis.call('ZADD', queued_jobs, now_ms, job_id)
redis.call('SET', arq_job, arq_payload, 'PX', arq_ttl_ms)
redis.call('ZADD', arq_queue, arq_score, arq_job_id)
return {'new', job_id}
