"""Creating rooms in LiveKit for accepted create jobs, with per-room retry and status.

A batch is worked concurrently, but never more LiveKit calls at once than the process's `slots`
allow; each room is its own job record, so one room's failure never holds up another's success.
Redis work is done per batch, not per room: the jobs and their rooms are read in a round trip
each, and created rooms are recorded in groups (`worker.rooms.created`), which is what lets one
worker keep up with a bulk.

Transient LiveKit failures, and rooms that could not start before the job's deadline, come back as
a delay; the caller re-queues those as a deferred batch. Every step is safe to run twice: LiveKit's
CreateRoom is get-or-create and the session's move to `created` (with its `room_created` event and
timers) is a guarded transaction.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from worker.deps import Deps
from worker.livekit import LiveKitRejected, LiveKitUnavailable
from worker.logs import get_logger
from worker.metrics import LIVEKIT_CALLS, SCHEDULE_LATENESS
from worker.ratelimit import RateLimitBusy, budget
from worker.rooms.created import GroupRecorder, Work, complete_job, fail
from worker.rooms.request import CreateRoom
from worker.rooms.session import compact_json

log = get_logger("roomkeeper.create")

UNAVAILABLE_MSG = "can't create room: livekit unavailable"


@dataclass(frozen=True)
class RetryIn:
    """Try this job again after `delay` seconds."""

    job_id: str
    delay: float


def job_request(req: CreateRoom) -> str:
    """The request a job record keeps (the validated, normalised create)."""
    fields = {
        "room_id": req.room_id,
        "max_participants": req.max_participants,
        "empty_timeout": req.empty_timeout,
        "departure_timeout": req.departure_timeout,
        "room_duration": req.room_duration,
        "webhook_url": req.webhook_url,
        "webhook_events": ",".join(req.webhook_events),
        "metadata": req.metadata_json,
    }
    return compact_json(fields).decode()


async def create_batch(
    deps: Deps,
    job_ids: list[str],
    *,
    slots: asyncio.Semaphore | None = None,
    deadline: float | None = None,
) -> list[RetryIn]:
    """Create the rooms of `job_ids`; returns the ones to retry later.

    `slots` bounds this process's LiveKit calls in flight; a room that has not got a slot by
    `deadline` (loop time) is not started and comes back with delay 0. Created rooms are recorded
    as they come, in groups of whatever has arrived meanwhile (`GroupRecorder`): one transaction
    under load, no waiting for the batch's slowest call otherwise.
    """
    slots = slots or asyncio.Semaphore(len(job_ids) or 1)
    deadline = deadline if deadline is not None else asyncio.get_running_loop().time() + 3600
    work = await _load(deps, job_ids)
    recorder = GroupRecorder(deps)
    outcomes = await asyncio.gather(*(_attempt(deps, w, slots, deadline, recorder) for w in work))
    retries: list[RetryIn] = []
    unavailable: list[tuple[Work, str]] = []
    for w, outcome in zip(work, outcomes, strict=True):
        if isinstance(outcome, RetryIn):
            retries.append(outcome)
        elif isinstance(outcome, LiveKitUnavailable):
            unavailable.append((w, str(outcome)))
        elif isinstance(outcome, LiveKitRejected):
            msg = f"can't create room: livekit rejected it ({outcome})"
            await fail(deps, w.job_id, w.room_id, msg)
    retries.extend(await _retry_or_fail(deps, unavailable))
    return retries


async def _load(deps: Deps, job_ids: list[str]) -> list[Work]:
    """Read the jobs, then their rooms (a round trip each); settle those with nothing to call."""
    jobs = await deps.store.create_jobs(job_ids)
    live = [w for w in (Work(j) for j in jobs) if not w.job.over and w.request]  # not gone or over
    async with deps.redis.pipeline(transaction=False) as pipe:
        for w in live:
            deps.store.head_cmd(pipe, w.room_id)
        rows = await pipe.execute()
    work: list[Work] = []
    for w, row in zip(live, rows, strict=True):
        session = deps.store.head(w.room_id, row)
        if session.job_id != w.job_id:
            await fail(deps, w.job_id, w.room_id, "superseded by a newer create of this room")
        elif session.live:  # a crash's re-run
            info_json = json.dumps(session.info, separators=(",", ":"))
            await complete_job(deps, w.job_id, info_json, w.job.event_id)
        else:
            work.append(w)
    return work


async def _attempt(
    deps: Deps,
    w: Work,
    slots: asyncio.Semaphore,
    deadline: float,
    recorder: GroupRecorder,
) -> RetryIn | LiveKitUnavailable | LiveKitRejected | None:
    """One room's LiveKit call: created (and recorded), a delay, or LiveKit's error."""
    info = await _call(deps, w, slots, deadline)
    if isinstance(info, dict):
        await recorder.record((w, info))  # outside the slot: recording is not a LiveKit call
        return None
    return info


async def _call(
    deps: Deps, w: Work, slots: asyncio.Semaphore, deadline: float
) -> dict[str, Any] | RetryIn | LiveKitUnavailable | LiveKitRejected | None:
    """Holding a slot: the room's CreateRoom, unless the job's time is up."""
    loop = asyncio.get_running_loop()
    async with slots:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return RetryIn(w.job_id, 0.0)  # the job's time is up; a fresh job takes it on
        if not await deps.store.start_create(w.job_id, w.room_id):
            return None  # finished by another run meanwhile
        request = w.request
        started = time.perf_counter()
        try:
            with budget(remaining):
                info = await deps.livekit.create_room(
                    w.room_id,
                    empty_timeout=int(request["empty_timeout"]),
                    # Jobs queued before the field existed get today's default.
                    departure_timeout=int(
                        request.get("departure_timeout") or deps.settings.default_departure_timeout
                    ),
                    max_participants=int(request["max_participants"]),
                    metadata=request["metadata"],
                )
        except RateLimitBusy as exc:
            return RetryIn(w.job_id, exc.wait)  # not an attempt: LiveKit was never asked
        except LiveKitUnavailable as exc:
            LIVEKIT_CALLS.labels("CreateRoom", "unavailable").inc()
            return exc
        except LiveKitRejected as exc:
            LIVEKIT_CALLS.labels("CreateRoom", "rejected").inc()
            return exc
        LIVEKIT_CALLS.labels("CreateRoom", "ok").inc()
        if w.job.due_ms:  # a scheduled room: how late it came after its time
            SCHEDULE_LATENESS.observe(max(0.0, time.time() - w.job.due_ms / 1000))
        log.info(
            "room created",
            job_id=w.job_id,
            room_id=w.room_id,
            sid=info["sid"],
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return info


async def _retry_or_fail(deps: Deps, unavailable: list[tuple[Work, str]]) -> list[RetryIn]:
    """Count the attempt of each room LiveKit could not take; fail those out of retries."""
    if not unavailable:
        return []
    schedule = deps.settings.create_retry_schedule
    retries: list[RetryIn] = []
    async with deps.redis.pipeline(transaction=False) as pipe:
        for w, error in unavailable:
            attempts = w.job.attempts + 1
            deps.store.job_attempt_cmds(pipe, w.job_id, attempts, error)
            if attempts <= len(schedule):
                retries.append(RetryIn(w.job_id, schedule[attempts - 1]))
                log.warning(
                    "create will retry",
                    job_id=w.job_id,
                    room_id=w.room_id,
                    error=error,
                    attempt=attempts,
                )
        await pipe.execute()
    retrying = {r.job_id for r in retries}
    for w, _ in unavailable:
        if w.job_id not in retrying:
            await fail(deps, w.job_id, w.room_id, UNAVAILABLE_MSG)
    return retries
