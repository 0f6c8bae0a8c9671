-- Record a group of created rooms in one step: each room still pending on its job gets its
-- created writes (session `created`, timers, `room_created`, the job complete). A room an
-- earlier run recorded, or one no longer this job's, is left as it is and its position returned:
-- the caller completes those jobs. The writes were built by created.py (a block, as
-- worker/staged.py spells it: a msgpack array of commands); this script only decides, per room,
-- whether its block applies.
--
-- KEYS[1..n]           each room's session hash, in the order of the rooms below
-- ARGV[1] rooms        how many rooms (n)
-- then per room:       its job_id, and the block of writes to apply when its session is still
--                      pending on that job (state queued or creating)
-- then:                the block of writes made once when any room was created (the wake-ups)
-- Returns the positions (1-based) of the rooms whose block was not applied.
local rooms = tonumber(ARGV[1])
local FIRST_ROOM = 2

local function apply(packed)
  for _, command in ipairs(cmsgpack.unpack(packed)) do redis.call(unpack(command)) end
end

local skipped = {}
for i = 1, rooms do
  local at = FIRST_ROOM + 2 * (i - 1)
  local head = redis.call('HMGET', KEYS[i], 'state', 'job_id')
  if (head[1] == 'queued' or head[1] == 'creating') and head[2] == ARGV[at] then
    apply(ARGV[at + 1])
  else
    skipped[#skipped + 1] = i
  end
end
if #skipped < rooms then apply(ARGV[FIRST_ROOM + 2 * rooms]) end
return skipped
