-- Mark a create job in progress and its queued session `creating`, unless the job is over.
-- The job stays in `queued_jobs` until it ends: reconciliation looks there for jobs whose arq job
-- Redis lost (worker/rooms/orphans.py).
--
-- KEYS[1] job          the create job's hash
-- KEYS[2] room         the room's session hash
-- ARGV[1] job_id
-- Returns 1 when the job may run, 0 when it is unknown, complete or failed.
local job, room = KEYS[1], KEYS[2]
local job_id = ARGV[1]

local st = redis.call('HGET', job, 'state')
if not st or st == 'complete' or st == 'failed' then return 0 end
redis.call('HSET', job, 'state', 'in_progress')
if redis.call('HGET', room, 'state') == 'queued' and
   redis.call('HGET', room, 'job_id') == job_id then
  redis.call('HSET', room, 'state', 'creating')
end
return 1
