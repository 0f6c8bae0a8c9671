"""Creating rooms in LiveKit for accepted create jobs, with per-room retry and status.

A batch is worked concurrently; each room is its own job record, so one room's failure never
holds up another's success. Transient LiveKit failures come back as a delay; the caller re-queues
those rooms as a deferred batch. Every step is safe to run twice: LiveKit's CreateRoom is
get-or-create and the session's move to `created` (with its `room_created` event and timers) is a
guarded transaction.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from redis.exceptions import WatchError

from worker import keys
from worker.deps import Deps
from worker.events import notify_body, notify_room
from worker.livekit import LiveKitRejected, LiveKitUnavailable
from worker.logs import get_logger
from worker.metrics import LIVEKIT_CALLS
from worker.store import LIVE_STATES, PENDING_STATES
from worker.timers import arm, room_timers

log = get_logger("roomkeeper.create")

UNAVAILABLE_MSG = "can't create room: livekit unavailable"


@dataclass(frozen=True)
class RetryIn:
    """Try this job again after `delay` seconds."""

    job_id: str
    delay: float


def job_request(
    *,
    room_id: str,
    max_participants: int,
    empty_timeout: int,
    room_duration: int,
    webhook_url: str | None,
    metadata_json: str,
) -> str:
    """The request a job record keeps (the validated, normalised create)."""
    return json.dumps(
        {
            "room_id": room_id,
            "max_participants": max_participants,
            "empty_timeout": empty_timeout,
            "room_duration": room_duration,
            "webhook_url": webhook_url,
            "metadata": metadata_json,
        },
        separators=(",", ":"),
    )


async def create_batch(deps: Deps, job_ids: list[str]) -> list[RetryIn]:
    """Create the rooms of `job_ids`; returns the ones to retry later."""
    results = await asyncio.gather(*(create_one(deps, j) for j in job_ids))
    return [r for r in results if r is not None]


async def create_one(deps: Deps, job_id: str) -> RetryIn | None:
    """Create one job's room, recording the outcome on the job and the room."""
    job = await deps.store.job(job_id)
    if not job or job.get("state") in ("complete", "failed"):
        return None
    request: dict[str, Any] = json.loads(job["request"])
    room_id = request["room_id"]
    room = await deps.store.room(room_id)
    if room.get("job_id") != job_id:
        await _fail(deps, job_id, room_id, "superseded by a newer create of this room")
        return None
    if room.get("state") in LIVE_STATES:
        await _complete_job(deps, job_id, room.get("info", "{}"))  # a re-run after a crash
        return None
    await _start(deps, job_id, room_id)
    started = time.perf_counter()
    try:
        info = await deps.livekit.create_room(
            room_id,
            empty_timeout=int(request["empty_timeout"]),
            max_participants=int(request["max_participants"]),
            metadata=request["metadata"],
        )
    except LiveKitUnavailable as exc:
        LIVEKIT_CALLS.labels("CreateRoom", "unavailable").inc()
        return await _retry_or_fail(deps, job_id, room_id, job, str(exc))
    except LiveKitRejected as exc:
        LIVEKIT_CALLS.labels("CreateRoom", "rejected").inc()
        await _fail(deps, job_id, room_id, f"can't create room: livekit rejected it ({exc})")
        return None
    LIVEKIT_CALLS.labels("CreateRoom", "ok").inc()
    await _created(deps, job_id, request, info, job["event_id"])
    log.info(
        "room created",
        job_id=job_id,
        room_id=room_id,
        sid=info["sid"],
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return None


async def _start(deps: Deps, job_id: str, room_id: str) -> None:
    async with deps.redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.job(job_id), "state", "in_progress")
        pipe.zrem(keys.QUEUED_JOBS, job_id)
        await pipe.execute()
    # Only the queued session of this job moves to creating.
    async with deps.redis.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(keys.room(room_id))
            state, current = await pipe.hmget(keys.room(room_id), "state", "job_id")
            if state == "queued" and current == job_id:
                pipe.multi()
                pipe.hset(keys.room(room_id), "state", "creating")
                await pipe.execute()
        except WatchError:
            pass


async def _retry_or_fail(
    deps: Deps, job_id: str, room_id: str, job: dict[str, str], error: str
) -> RetryIn | None:
    schedule = deps.settings.create_retry_schedule
    attempts = int(job.get("attempts", 0)) + 1
    await deps.redis.hset(keys.job(job_id), mapping={"attempts": attempts, "last_error": error})
    if attempts > len(schedule):
        await _fail(deps, job_id, room_id, UNAVAILABLE_MSG)
        return None
    log.warning("create will retry", job_id=job_id, room_id=room_id, error=error, attempt=attempts)
    return RetryIn(job_id, schedule[attempts - 1])


async def _fail(deps: Deps, job_id: str, room_id: str, msg: str) -> None:
    async with deps.redis.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(keys.room(room_id))
            state, current = await pipe.hmget(keys.room(room_id), "state", "job_id")
            pipe.multi()
            if current == job_id and state in PENDING_STATES:
                pipe.hset(keys.room(room_id), "state", "failed")
            pipe.hset(keys.job(job_id), mapping={"state": "failed", "msg": msg})
            pipe.zrem(keys.QUEUED_JOBS, job_id)
            pipe.expire(keys.job(job_id), deps.store.job_ttl_s)
            await pipe.execute()
        except WatchError:
            await deps.redis.hset(keys.job(job_id), mapping={"state": "failed", "msg": msg})
    log.warning("room create failed", job_id=job_id, room_id=room_id, msg=msg)


async def _complete_job(deps: Deps, job_id: str, info_json: str) -> None:
    async with deps.redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.job(job_id), mapping={"state": "complete", "room_info": info_json})
        pipe.zrem(keys.QUEUED_JOBS, job_id)
        pipe.expire(keys.job(job_id), deps.store.job_ttl_s)
        await pipe.execute()


async def _created(
    deps: Deps, job_id: str, request: dict[str, Any], info: dict[str, Any], event_id: str
) -> None:
    """Move the session to `created`, arm its timers and emit `room_created`, all at once."""
    room_id = request["room_id"]
    info_json = json.dumps(info, separators=(",", ":"))
    settings = deps.settings
    past_ttl = int(settings.past_rooms_retention_days * 86400)
    metadata = json.loads(info["metadata"] or "{}") if info.get("metadata") else {}
    body = notify_body(
        "room_created", notify_room(info), event_id=event_id, created_at=int(time.time())
    )
    while True:
        async with deps.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(keys.room(room_id))
                state, current = await pipe.hmget(keys.room(room_id), "state", "job_id")
                if current != job_id or state not in PENDING_STATES:
                    await pipe.reset()
                    break  # done by an earlier run, or the room moved on
                pipe.multi()
                pipe.hset(
                    keys.room(room_id),
                    mapping={
                        "state": "created",
                        "sid": info["sid"],
                        "info": info_json,
                        "title": str(metadata.get("room_title", "")),
                        "webhook_url": request.get("webhook_url") or "",
                        "created": info["creation_time"],
                        "empty_timeout": request["empty_timeout"],
                        "duration": request["room_duration"],
                        "participants": 0,
                        "joined": 0,
                    },
                )
                pipe.zadd(keys.ACTIVE_ROOMS, {room_id: info["creation_time"]})
                pipe.set(keys.sid(info["sid"]), room_id, ex=past_ttl)
                arm(
                    pipe,
                    deps.timers,
                    room_timers(
                        room_id,
                        info["sid"],
                        creation_time=int(info["creation_time"]),
                        empty_timeout=int(request["empty_timeout"]),
                        duration_min=int(request["room_duration"]),
                        warnings=settings.session_ending_warnings,
                    ),
                )
                deps.outbox.emit(
                    pipe,
                    event_id=event_id,
                    event="room_created",
                    room_id=room_id,
                    body=body,
                    room_webhook_url=request.get("webhook_url"),
                )
                pipe.hset(keys.job(job_id), mapping={"state": "complete", "room_info": info_json})
                pipe.zrem(keys.QUEUED_JOBS, job_id)
                pipe.expire(keys.job(job_id), deps.store.job_ttl_s)
                await pipe.execute()
                return
            except WatchError:
                continue
    await _complete_job(deps, job_id, info_json)
