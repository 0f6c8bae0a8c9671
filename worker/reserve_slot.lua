-- Reserve the next free slot of a shared timetable (GCRA) for one LiveKit call.
--
-- KEYS[1] tat          the theoretical arrival time of the next call, in ms
-- ARGV[1] now_ms
-- ARGV[2] interval_ms  the time one call uses up (1000 / rate)
-- ARGV[3] burst_ms     how far ahead of the timetable a call may go (interval * (burst - 1))
-- ARGV[4] max_wait_ms  the longest wait the caller accepts (-1 = no bound)
-- Returns (as a string) the ms to wait before the call may go; negative (-wait) when the slot is
-- beyond max_wait_ms and nothing was reserved.
local tat_key = KEYS[1]
local now, interval_ms, burst_ms, max_wait =
  tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local UNBOUNDED = -1

local tat = tonumber(redis.call('GET', tat_key) or now)
if tat < now then tat = now end
local wait = tat - now - burst_ms
if wait < 0 then wait = 0 end
if max_wait ~= UNBOUNDED and wait > max_wait then return tostring(-wait) end
local new_tat = tat + interval_ms
redis.call('SET', tat_key, tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1000)
return tostring(wait)
