-- May this delivery be attempted now? The host's breaker, then its rate (GCRA), in one step.
-- A hold clears the in-flight mark the peek set and says why on the record, for the log.
--
-- KEYS[1] host           the host's hash (state, probe_at, failures, slow_rps, slow_until)
-- KEYS[2] waiting        sorted set qid -> ms it started waiting for the open breaker
-- KEYS[3] tat            the host's rate timetable (theoretical arrival time, ms)
-- KEYS[4] hosts          sorted set host -> last attempt (ms)
-- KEYS[5] record         the delivery's hash
-- ARGV[1] qid            the delivery's (room, URL) queue
-- ARGV[2] now            ms
-- ARGV[3] probe_ms       the probe interval
-- ARGV[4] rps            attempts per second for the host (0 = no rate check)
-- ARGV[5] max_sleep_ms   the longest wait for a rate slot the caller sleeps through
-- ARGV[6] host_name      the host, as listed in `hosts`
-- ARGV[7] breaker_reason shown for a delivery the breaker holds
-- ARGV[8] rate_reason    shown for a delivery the rate holds
-- Returns {1, wait_ms, probe (0|1), failures} to go, or {0, until_ms, 'breaker'|'rate'} to hold.
local host, waiting, tat_key, hosts, record = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local qid, now, probe_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local rps, max_sleep_ms, host_name = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local breaker_reason, rate_reason = ARGV[7], ARGV[8]

redis.call('ZADD', hosts, now, host_name)
local h = redis.call('HMGET', host, 'state', 'probe_at', 'failures', 'slow_rps', 'slow_until')
local failures = tonumber(h[3] or '0')

local function hold(until_ms, reason, why)
  redis.call('HDEL', record, 'inflight')
  redis.call('HSET', record, 'held', reason, 'next_at', string.format('%.3f', until_ms / 1000))
  return {0, math.floor(until_ms), why}
end

local probe = 0
if h[1] == 'open' then
  local probe_at = tonumber(h[2] or '0')
  redis.call('ZADD', waiting, 'NX', now, qid)
  local first = redis.call('ZRANGE', waiting, 0, 0)[1]
  -- A first in line that never came back (its queue emptied) lets anyone probe a turn later.
  if now < probe_at or (first ~= qid and now < probe_at + probe_ms) then
    local until_ms = probe_at
    if first ~= qid then until_ms = probe_at + probe_ms end
    if until_ms < now + 20 then until_ms = now + probe_ms end
    return hold(until_ms, breaker_reason, 'breaker')
  end
  probe = 1
end

local wait = 0
if rps > 0 then
  if h[4] and tonumber(h[5] or '0') > now then rps = math.min(rps, tonumber(h[4])) end
  local tat = tonumber(redis.call('GET', tat_key) or '0')
  if tat < now then tat = now end
  wait = tat - now
  if wait > max_sleep_ms then return hold(tat, rate_reason, 'rate') end
  local new_tat = tat + 1000 / rps
  redis.call('SET', tat_key, string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1000)
end

if probe == 1 then
  redis.call('HSET', host, 'probe_at', now + probe_ms)
  redis.call('ZREM', waiting, qid)
end
redis.call('HDEL', record, 'held')
return {1, math.floor(wait), probe, failures}
