"""Every Redis key roomkeeper writes, in one place (arq keeps its own under `arq:`)."""

from __future__ import annotations

PREFIX = "rk:"

# arq's queue for room-create jobs.
QUEUE_NAME = "rk:queue"
WORKER_HEALTH = f"{PREFIX}worker:health"  # arq's health-check record of each worker

# The durable schedules (worker/queue/schedule.py): room timers, LiveKit's events in, deliveries,
# rooms scheduled ahead.
TIMERS = "timers"
INBOUND = "in"
DELIVERY_QUEUES = "dq"
SCHEDULED_ROOMS = "sched"


def schedule_due(schedule: str) -> str:
    """Zset member -> due time (ms): what a schedule holds, leased members included."""
    return f"{PREFIX}{schedule}:due"


def schedule_leases(schedule: str) -> str:
    """Hash member -> the token of the claim that holds it."""
    return f"{PREFIX}{schedule}:lease"


def schedule_wake(schedule: str) -> str:
    """List: producers push to it to cut a sleeping consumer's wait short."""
    return f"{PREFIX}{schedule}:wake"


def schedule_list(schedule: str, member: str) -> str:
    """List: the FIFO of items one member of a schedule owns."""
    return f"{PREFIX}{schedule}:q:{member}"


def rate(name: str) -> str:
    """String: the shared timetable (next free slot, ms) of a rate limit."""
    return f"{PREFIX}rate:{name}"


def once(event_id: str) -> str:
    """String: set when an event that must go out once (a `session_ending`) was emitted."""
    return f"{PREFIX}once:{event_id}"


def room(room_id: str) -> str:
    """Hash: the room's current (or last) session: state, sid, info, timers' inputs."""
    return f"{PREFIX}room:{room_id}"


ACTIVE_ROOMS = f"{PREFIX}rooms:active"  # zset room_id -> creation time (s)


def sid(room_sid: str) -> str:
    """String: which room_id a LiveKit sid belongs to (ours), for routing LiveKit's events."""
    return f"{PREFIX}sid:{room_sid}"


def past_room(room_sid: str) -> str:
    """Hash: a finished session, kept for `fetchPastRooms`."""
    return f"{PREFIX}past:{room_sid}"


PAST_ROOMS = f"{PREFIX}past"  # zset sid -> ended (s)


def past_by_room(room_id: str) -> str:
    """Zset sid -> ended (s), the finished sessions of one room_id."""
    return f"{PREFIX}past:room:{room_id}"


def members(room_sid: str) -> str:
    """Set: identities counted as present in one session (dependent participants never)."""
    return f"{PREFIX}members:{room_sid}"


def egress(egress_id: str) -> str:
    """Hash: one LiveKit egress (recording or stream) of ours: room, session, status, file."""
    return f"{PREFIX}egress:{egress_id}"


RECORDINGS = f"{PREFIX}recordings"  # zset egress_id -> started (s), every egress seen


def recordings_by_room(room_id: str) -> str:
    """Zset egress_id -> started (s), the egresses of one room_id."""
    return f"{PREFIX}recordings:room:{room_id}"


def job(job_id: str) -> str:
    """Hash: one room-create job's request, state, outcome."""
    return f"{PREFIX}job:{job_id}"


QUEUED_JOBS = f"{PREFIX}jobs:queued"  # zset job_id -> claim ms: open jobs (back-pressure, orphans)

REPLICA_BARRIER = f"{PREFIX}replica:barrier"  # counter the replica confirmation writes and waits on


def lk_event_seen(event_id: str) -> str:
    """String: a LiveKit event id already accepted (dedup window)."""
    return f"{PREFIX}lkev:{event_id}"


def lk_event_done(event_id: str) -> str:
    """String: a LiveKit event id already applied to room state (re-run guard)."""
    return f"{PREFIX}lkdone:{event_id}"


def event_body(event_id: str) -> str:
    """String: the exact JSON body of an outgoing event, shared by its deliveries."""
    return f"{PREFIX}ev:{event_id}"


def delivery(delivery_id: str) -> str:
    """Hash: one event to one URL: state, attempts count, reason (see worker.webhooks.delivery)."""
    return f"{PREFIX}dlv:{delivery_id}"


def webhook_url(url_hash: str) -> str:
    """String: a webhook URL, kept once for the records that name it by its hash (`uh`)."""
    return f"{PREFIX}url:{url_hash}"


def delivery_attempts(delivery_id: str) -> str:
    """List: JSON attempt records of one delivery, oldest first, as versions before the log was
    folded into the record (its `log` field) kept them: still read and removed, never written."""
    return f"{PREFIX}dlv:{delivery_id}:att"


DELIVERIES = f"{PREFIX}dlvs"  # zset (score 0) of delivery ids, lexically ordered by time


def deliveries_by_room(room_id: str) -> str:
    """Zset (score 0) of one room's delivery ids."""
    return f"{PREFIX}dlvs:room:{room_id}"


DELIVERY_COUNTS = f"{PREFIX}dlvs:counts"  # hash state -> count
DELIVERY_PRUNE_LOCK = f"{PREFIX}dlvs:prune"  # string: who prunes old deliveries this turn


def deliveries_in_state(state: str) -> str:
    """Zset (score 0) of the pending or the dead delivery ids (delivered ones have no index)."""
    return f"{PREFIX}dlvs:state:{state}"


def gone(queue_id: str) -> str:
    """String: set when a (room, URL) answered 410, stopping its queue until redelivery."""
    return f"{PREFIX}gone:{queue_id}"


def scheduled(room_id: str) -> str:
    """Hash: a room scheduled for later: its job, start time and (compressed) create request."""
    return f"{PREFIX}scheduled:{room_id}"


# Zset (score 0) of `{start_at:011d}|{room_id}`: scheduled rooms, lexically ordered by start time.
SCHEDULED_BY_START = f"{PREFIX}scheduled:by_start"


def deliveries_by_url(url_hash: str) -> str:
    """Zset (score 0) of the delivery ids to one URL (by the URL's hash), as versions before
    replay by URL read the state indexes kept it: still pruned, never written."""
    return f"{PREFIX}dlvs:url:{url_hash}"


# Per target host (`scheme://host:port`): its circuit breaker and its rate.
HOSTS = f"{PREFIX}hosts"  # zset host -> last attempt (ms), what the console lists
HOSTS_OPEN = f"{PREFIX}hosts:open"  # set of hosts whose breaker is open


def host(host_key: str) -> str:
    """Hash: a host's breaker (failures, state, opened, probe_at) and lowered rate (slow_*)."""
    return f"{PREFIX}host:{host_key}"


def host_waiting(host_key: str) -> str:
    """Zset qid -> ms it started waiting: the (room, URL) queues an open breaker holds."""
    return f"{PREFIX}host:{host_key}:waiting"


def host_tat(host_key: str) -> str:
    """String: the host's rate timetable (GCRA theoretical arrival time, ms)."""
    return f"{PREFIX}host:{host_key}:tat"
