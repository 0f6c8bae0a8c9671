"""What a create job writes when a room's create ends: created, already done, or failed.

A created room's session moves to `created`, its timers are armed and its `room_created` event is
emitted in one atomic step (`record_created.lua`, which checks the session is still pending on its
job), so an event exists exactly when the state does and a re-run after a crash writes nothing
twice. Rooms are recorded as their LiveKit calls return, each time in one step for all that have
arrived meanwhile (`GroupRecorder`).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import orjson
from redis.exceptions import WatchError
from redis.typing import EncodableT

from worker import lua
from worker.deps import Deps
from worker.logs import get_logger
from worker.rooms.session import CreateJob, RoomSession, RoomState
from worker.rooms.timers import arm, needs_wake, room_timers
from worker.staged import block, stage
from worker.webhooks.bodies import notify_body, notify_room

log = get_logger("roomkeeper.create")

# Most rooms recorded per script call: enough to amortise the round trip, few enough that one
# call holds Redis only briefly.
RECORD_CHUNK = 100


@dataclass(frozen=True)
class Work:
    """One create job being worked."""

    job: CreateJob

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self.job.job_id

    @property
    def request(self) -> dict[str, Any]:
        """The validated create it keeps."""
        return self.job.request

    @property
    def room_id(self) -> str:
        """The room the job creates."""
        return str(self.request["room_id"])


Created = tuple[Work, dict[str, Any]]  # a job and the LiveKit room info it got


def creation_ms(info: dict[str, Any]) -> int:
    """When LiveKit created the room, in ms (whole seconds from info stored before ms were)."""
    return int(info.get("creation_time_ms") or int(info["creation_time"]) * 1000)


async def fail(deps: Deps, job_id: str, room_id: str, msg: str) -> None:
    """End a job as failed (and its session, if it is still this job's pending one)."""
    async with deps.redis.pipeline(transaction=True) as pipe:
        try:
            session = await deps.store.watch_head(pipe, room_id)
            pipe.multi()
            if session.job_id == job_id and session.pending:
                deps.store.failed_cmds(pipe, room_id)
            deps.store.job_failed_cmds(pipe, job_id, msg)
            await pipe.execute()
        except WatchError:
            # The session moved on meanwhile (it is no longer this job's): only the job fails.
            async with deps.redis.pipeline(transaction=True) as job_pipe:
                deps.store.job_failed_cmds(job_pipe, job_id, msg)
                await job_pipe.execute()
    log.warning("room create failed", job_id=job_id, room_id=room_id, msg=msg)


async def complete_job(deps: Deps, job_id: str, info_json: str, event_id: str = "") -> None:
    """Mark a job complete whose room was recorded already (a re-run after a crash)."""
    async with deps.redis.pipeline(transaction=True) as pipe:
        deps.store.job_complete_cmds(pipe, job_id, info_json, event_id=event_id)
        await pipe.execute()


class GroupRecorder:
    """Records created rooms in groups (a group commit).

    Each caller adds its room; whoever finds the recorder free records everything waiting, in
    one step, while the rooms arriving meanwhile form the next group. A caller returns
    once its room is recorded (or its group failed, which fails the job and re-runs it).
    """

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._waiting: list[Created] = []
        self._lock = asyncio.Lock()
        self._script = lua.script(deps.redis, "worker.rooms", "record_created")

    async def record(self, item: Created) -> None:
        """Record `item`, with whatever else is waiting when the recorder is free."""
        self._waiting.append(item)
        async with self._lock:
            while any(waiting is item for waiting in self._waiting):
                chunk = self._waiting[:RECORD_CHUNK]
                del self._waiting[:RECORD_CHUNK]
                await _record_created(self.deps, self._script, chunk)


async def _record_created(deps: Deps, script: Any, chunk: list[Created]) -> None:
    """Move each created room's session to `created` (`record_created.lua`), in one round trip.

    The script applies a room's writes only while its session is still pending on the room's
    job, atomically, as a WATCHed transaction would have after reading the sessions; the jobs of
    the others (recorded by an earlier run, or superseded) are completed afterwards.
    """
    args: list[EncodableT] = [len(chunk)]
    soonest = None
    for w, info in chunk:
        created = stage(deps.redis)
        due = _created_cmds(created, deps, w, info)
        soonest = due if soonest is None else min(soonest, due)
        args += [w.job_id, block(created)]
    wake = stage(deps.redis)  # one wake-up per schedule for the whole group
    if needs_wake(soonest):
        deps.timers.wake(wake)
    deps.outbox.schedule.wake(wake)
    args.append(block(wake))
    skipped = await script(keys=deps.store.session_keys([w.room_id for w, _ in chunk]), args=args)
    if skipped:  # done by an earlier run (or no longer this job's): only the job completes
        async with deps.redis.pipeline(transaction=True) as pipe:
            for position in skipped:
                w, info = chunk[int(position) - 1]
                deps.store.job_done_cmds(
                    pipe, w.job_id, room_id=w.room_id, sid=info["sid"], event_id=w.job.event_id
                )
            await pipe.execute()


def _metadata(text: str) -> Any:
    """LiveKit's room metadata as read for its title: orjson (in C) where it reads it, which is
    the same values `json` reads; `json` for the rest, which reads it or raises as before."""
    if not text:
        return {}
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _created_cmds(pipe: Any, deps: Deps, w: Work, info: dict[str, Any]) -> int:
    """The session's move to `created`, its timers and its `room_created` event; returns when
    its first timer is due (ms)."""
    request, room_id, job_id = w.request, w.room_id, w.job_id
    settings = deps.settings
    metadata = _metadata(info.get("metadata") or "")
    body = notify_body(
        "room_created", notify_room(info), event_id=w.job.event_id, created_at=int(time.time())
    )
    session = RoomSession(
        room_id=room_id,
        state=RoomState.CREATED,
        job_id=job_id,
        sid=info["sid"],
        info=info,
        title=str(metadata.get("room_title", "")),
        webhook_url=request.get("webhook_url") or "",
        webhook_events=request.get("webhook_events") or "",
        created=int(info["creation_time"]),
        created_ms=creation_ms(info),
        empty_timeout=int(request["empty_timeout"]),
        duration=int(request["room_duration"]),
    )
    sid_ttl_s = int(settings.past_rooms_retention_days * 86400)
    deps.store.created_cmds(pipe, session, sid_ttl_s=sid_ttl_s)
    timers = room_timers(
        room_id,
        info["sid"],
        creation_ms=creation_ms(info),
        empty_timeout=int(request["empty_timeout"]),
        duration_min=int(request["room_duration"]),
        warnings=settings.session_ending_warnings,
    )
    arm(pipe, deps.timers, timers, wake=False)
    deps.outbox.emit(
        pipe,
        event_id=w.job.event_id,
        event="room_created",
        room_id=room_id,
        body=body,
        room_webhook_url=request.get("webhook_url"),
        room_events=request.get("webhook_events"),
        wake=False,
    )
    deps.store.job_done_cmds(
        pipe, job_id, room_id=room_id, sid=info["sid"], event_id=w.job.event_id
    )
    return min(t.deadline_ms for t in timers)
