"""Submitting creates: the one path by which `/auth/room/create` and `createBulk` queue rooms.

Each room is claimed by `claim_create.lua`, and a new claim writes the arq job that will create
it in the same script, so no crash (of the API, of Redis with AOF) can leave a claimed room
without its job. Rooms are grouped into arq jobs of `create_batch_size`; every claim of a group
carries its group's job, and whichever claims are new write it (the same key and payload each
time). A group's job may name rooms that turned out pending or live: those job ids were never
written, and the worker skips them.

A room whose `start_at` lies beyond `schedule_lead` is not claimed but scheduled
(`worker.rooms.scheduled`); when it falls due, `worker.rooms.firing` makes this same claim.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from redis.exceptions import OutOfMemoryError

from worker.arqueue import arq_job
from worker.batching import Call, batcher
from worker.deps import Deps
from worker.rooms.create import job_request
from worker.rooms.jobs import CREATE_ROOMS, batch_job_id
from worker.rooms.records import CreateClaim, Store
from worker.rooms.request import CreateRoom
from worker.rooms.scheduled import Scheduled, is_scheduled, schedule_rooms

ORIGIN = "bulk"  # the arq job ids of submitted groups derive from it (see `batch_job_id`)


def _uuid4_hex() -> str:
    """A random (version 4) UUID as 32 hex digits, what `uuid.uuid4().hex` gives, without
    building a `uuid.UUID` (which costs three times the randomness)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    return raw.hex()


def _uuid4_str() -> str:
    """A random UUID as `str(uuid.uuid4())` writes it (what `new_event_id` gives), the same way."""
    h = _uuid4_hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


async def submit(deps: Deps, requests: Sequence[CreateRoom]) -> list[CreateClaim]:
    """Claim each room's create and queue the new ones, in one round trip; claims in order.

    `requests` must name each room_id once (a repeated one would only find its own claim).
    """
    if not requests:
        return []
    size = deps.settings.create_batch_size
    store = deps.store
    calls: list[Call] = []
    for start in range(0, len(requests), size):
        group = requests[start : start + size]
        job_ids = [_uuid4_hex() for _ in group]
        job = arq_job(CREATE_ROOMS, (job_ids,), batch_job_id(ORIGIN, job_ids))
        for req, job_id in zip(group, job_ids, strict=True):
            calls.append(
                store.claim_create_call(
                    room_id=req.room_id,
                    job_id=job_id,
                    request=job_request(req),
                    event_id=_uuid4_str(),
                    enqueue=job,
                )
            )
    # The claims of concurrent calls in this process go to Redis in one pipeline; each is still
    # its own script, so each call gets exactly the answers it would have had alone.
    answers = await batcher(store.redis).call_many(calls)
    # A full Redis refuses each script whole, so some rooms of a call may be claimed and others
    # not; those are reported one by one, and a call of which nothing was claimed fails whole.
    full = [isinstance(a, OutOfMemoryError) for a in answers]
    if all(full):
        raise answers[0]
    for answer in answers:
        if isinstance(answer, Exception) and not isinstance(answer, OutOfMemoryError):
            raise answer
    return [
        CreateClaim("full") if refused else Store.parse_claim(raw)
        for raw, refused in zip(answers, full, strict=True)
    ]


async def submit_or_schedule(
    deps: Deps, requests: Sequence[CreateRoom]
) -> list[CreateClaim | Scheduled]:
    """`submit` the rooms to create now, schedule the ones whose `start_at` lies beyond the lead;
    results in request order (room_ids distinct, as for `submit`)."""
    now = time.time()
    later = [is_scheduled(r.start_at, deps.settings.schedule_lead, now) for r in requests]
    if not any(later):  # as most calls are: nothing to split
        return list(await submit(deps, requests))
    pairs = list(zip(requests, later, strict=True))
    scheduled = iter(await schedule_rooms(deps, [r for r, w in pairs if w]))
    claims = iter(await submit(deps, [r for r, w in pairs if not w]))
    return [next(scheduled) if w else next(claims) for w in later]
