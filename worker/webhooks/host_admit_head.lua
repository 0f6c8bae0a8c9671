-- The head of a claimed (room, URL) queue asked about, in the same script as the step that read
-- it (`worker.lua.chained`): prepended to host_admit.lua, it finds the delivery the step just
-- marked in flight and lets host_admit.lua run for it; anything else (the queue empty, the lease
-- lost, a head not marked by this step: finished, gone, or its body expired) asks nothing, so no
-- rate slot or probe is spent on a delivery that will not be attempted.
--
-- KEYS[5] record         set here: the head delivery's hash (host_admit.lua's KEYS[5])
-- KEYS[6] list           the queue's FIFO of delivery ids
-- KEYS[7] leases         the delivery schedule's leases (member -> token)
-- ARGV[9] member         the queue's schedule member
-- ARGV[10] token         the claim's token
-- ARGV[11] record_prefix delivery record key without the id
-- ARGV[12] marked        the `inflight` value the step wrote on the head it read
-- Returns {2} when nothing was asked, else as host_admit.lua returns.
local head = redis.call('LINDEX', KEYS[6], 0)
if not head or redis.call('HGET', KEYS[7], ARGV[9]) ~= ARGV[10] then return {2} end
KEYS[5] = ARGV[11] .. head
if redis.call('HGET', KEYS[5], 'inflight') ~= ARGV[12] then return {2} end
