-- Record a group of created rooms in one step: each room still pending on its job gets its
-- created writes (session `created`, timers, `room_created`, the job complete); a room an
-- earlier run recorded gets only the job's completion. The writes were built by created.py
-- (worker/staged.py spells a block); this script only decides, per room, which block applies.
--
-- KEYS[1..n]           each room's session hash, in the order of the rooms below
-- ARGV[1] rooms        how many rooms (n)
-- then per room:       its job_id, the block of writes when its session is still pending on
--                      that job (state queued or creating), the block when it is not
-- then:                the block of writes made once when any room was created (the wake-ups)
-- A block: its number of commands, then for each command its word count and its words.
-- Returns how many rooms were created.
local rooms = tonumber(ARGV[1])
local at = 2

local function block(apply)
  local commands = tonumber(ARGV[at])
  at = at + 1
  for _ = 1, commands do
    local words = tonumber(ARGV[at])
    if apply then redis.call(unpack(ARGV, at + 1, at + words)) end
    at = at + words + 1
  end
end

local created = 0
for i = 1, rooms do
  local job_id = ARGV[at]
  at = at + 1
  local head = redis.call('HMGET', KEYS[i], 'state', 'job_id')
  local pending = (head[1] == 'queued' or head[1] == 'creating') and head[2] == job_id
  block(pending)
  block(not pending)
  if pending then created = created + 1 end
end
block(created > 0)
return created
