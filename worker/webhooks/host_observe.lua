-- Count one attempt's result against its host: a failure may open the breaker, any answer
-- resets the count and closes it (every waiting queue due now); a Retry-After halves the rate.
--
-- KEYS[1] host           the host's hash
-- KEYS[2] waiting        sorted set of the queues the open breaker holds
-- KEYS[3] open_hosts     set of the hosts whose breaker is open
-- KEYS[4] due            the delivery schedule's sorted set
-- KEYS[5] leases         the delivery schedule's leases (member -> token)
-- KEYS[6] wake           the delivery schedule's wake list
-- ARGV[1] kind           'fail' (the host is in trouble) or 'ok' (it answered)
-- ARGV[2] now            ms
-- ARGV[3] threshold      consecutive failures that open the breaker
-- ARGV[4] probe_ms       the probe interval
-- ARGV[5] retry_after    seconds from a 429/503's Retry-After, -1 = none
-- ARGV[6] base_rps       the configured rate (0 = none: nothing to lower)
-- ARGV[7] host_name      the host, as kept in `open_hosts`
-- ARGV[8] floor_rps      the lowest a Retry-After takes the rate
-- ARGV[9] min_ms         the shortest a lowering lasts
-- Returns 1 when this opened the breaker, 2 when it closed it, else 0.
local host, waiting, open_hosts, due, leases, wake =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local kind, now, threshold, probe_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local retry_after, base_rps, host_name = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local floor_rps, min_ms = tonumber(ARGV[8]), tonumber(ARGV[9])

local moved = 0
if kind == 'fail' then
  local f = redis.call('HINCRBY', host, 'failures', 1)
  if redis.call('HGET', host, 'state') ~= 'open' and f >= threshold then
    redis.call('HSET', host, 'state', 'open', 'opened', now, 'probe_at', now + tonumber(probe_ms))
    redis.call('SADD', open_hosts, host_name)
    moved = 1
  end
else
  redis.call('HSET', host, 'failures', 0)
  if redis.call('HGET', host, 'state') == 'open' then
    redis.call('HSET', host, 'state', 'closed', 'closed_at', now)
    redis.call('HDEL', host, 'probe_at')
    redis.call('SREM', open_hosts, host_name)
    -- Every waiting queue is due now; one a consumer holds carries on under its lease.
    for _, q in ipairs(redis.call('ZRANGE', waiting, 0, -1)) do
      if redis.call('HEXISTS', leases, q) == 0 then redis.call('ZADD', due, 'XX', now, q) end
    end
    redis.call('DEL', waiting)
    redis.call('RPUSH', wake, 1)
    redis.call('LTRIM', wake, -64, -1)
    moved = 2
  end
end

if retry_after >= 0 and base_rps > 0 then
  local h = redis.call('HMGET', host, 'slow_rps', 'slow_until')
  local current = base_rps
  if h[1] and tonumber(h[2] or '0') > now then current = tonumber(h[1]) end
  redis.call('HSET', host, 'slow_rps', math.max(current / 2, floor_rps),
    'slow_until', now + math.max(retry_after * 1000, min_ms))
end
return moved
