"""`/auth/room/*`: plugNmeet's room routes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from handlers.replies import StatusCode, failure, ok
from handlers.state import DEPS, LOG_FIELDS, SETTINGS
from worker import keys
from worker.deps import Deps
from worker.rooms.limits import CreateLimits
from worker.rooms.request import CreateRoomRequest
from worker.rooms.scheduled import Scheduled
from worker.rooms.session import CreateJob, JobState, completed_room_info
from worker.rooms.submit import submit_or_schedule
from worker.settings import Settings


def create_limits(settings: Settings) -> CreateLimits:
    """The validation limits the settings call for."""
    return CreateLimits(
        default_empty_timeout=settings.default_empty_timeout,
        default_departure_timeout=settings.default_departure_timeout,
        max_room_duration=settings.max_room_duration,
        allowed_cidrs=settings.webhook_allowed_cidrs,
        max_schedule_ahead=settings.schedule_max_ahead,
    )


def api_room_info(info: dict[str, Any]) -> dict[str, Any]:
    """A room as `room_info`/`roomInfo` in API answers (`creation_time` a number)."""
    return {
        "sid": info.get("sid", ""),
        "name": info.get("name", ""),
        "max_participants": int(info.get("max_participants", 0)),
        "empty_timeout": int(info.get("empty_timeout", 0)),
        "creation_time": int(info.get("creation_time", 0)),
        "turn_password": info.get("turn_password", ""),
        "enabled_codecs": info.get("enabled_codecs", []),
        "metadata": info.get("metadata", ""),
    }


def created_room_info(info: dict[str, Any]) -> dict[str, Any]:
    """A created room for every SDK: plugNmeet's ActiveRoomInfo keys and LiveKit's room keys.

    protojson readers skip keys they do not know, so the seed (LiveKit's room), the JS and
    Python SDKs and PHP v2 (`ActiveRoomInfo`, `getRoomId()`) all read this one object.
    """
    room = api_room_info(info)
    try:
        metadata = json.loads(room["metadata"] or "{}")
    except ValueError:
        metadata = {}
    if not isinstance(metadata, dict):
        metadata = {}
    return {
        "room_id": room["name"],
        "room_title": str(metadata.get("room_title", "")),
        "joined_participants": int(info.get("num_participants", 0)),
        "is_running": True,  # it exists in LiveKit and takes joins
        "is_recording": False,
        "is_active_rtmp": False,
        "webhook_url": str(metadata.get("webhook_url", "")),
        # PHP v2 reads every ActiveRoomInfo property it has a getter for.
        "is_breakout_room": False,
        "parent_room_id": "",
        **room,
    }


def room_reply(msg: str, info: dict[str, Any], **extra: Any) -> web.Response:
    """Success with the room under both names the SDKs and the seed use."""
    room = created_room_info(info)
    return ok(msg, room_info=room, roomInfo=room, **extra)


def wants_async(request: web.Request) -> bool:
    """RFC 7240 `Prefer: respond-async`."""
    if request.headers.get("Prefer") == "respond-async":  # as SDKs send it: no parsing
        return True
    prefs = ",".join(request.headers.getall("Prefer", []))
    return any(p.split(";")[0].strip().lower() == "respond-async" for p in prefs.split(","))


def queued(job_id: str, **extra: Any) -> web.Response:
    """202: the job is accepted and goes on."""
    return ok("queued", http_status=202, job_id=job_id, **extra)


async def wait_for_job(deps: Deps, job_id: str, timeout: float) -> CreateJob:
    """Poll the job record until it is complete or failed, or `timeout` runs out."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        job = await deps.store.create_job(job_id)
        if job.state in (JobState.COMPLETE, JobState.FAILED) or time.monotonic() >= deadline:
            return job
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.05)


async def create(request: web.Request, body: CreateRoomRequest) -> web.Response:
    """plugNmeet's `/room/create`, idempotent per `room_id`."""
    settings = request.app[SETTINGS]
    deps = request.app[DEPS]
    req = body.room
    request[LOG_FIELDS] = {"room_id": req.room_id}
    # The claim writes the arq job itself: never a claim without a job.
    (claim,) = await submit_or_schedule(deps, [req])
    if isinstance(claim, Scheduled):
        request[LOG_FIELDS]["job_id"] = claim.job_id
        await deps.replicas.confirm(deps.redis, [keys.scheduled(claim.room_id)])
        return scheduled_reply(claim)
    if claim.kind == "exists":
        return room_reply("room already exists", claim.info or {})
    if claim.kind == "ending":
        return failure(StatusCode.CONFLICT, "room is ending; create it again once it has ended")
    assert claim.job_id is not None
    request[LOG_FIELDS]["job_id"] = claim.job_id
    await deps.replicas.confirm(deps.redis, [keys.job(claim.job_id)])
    if wants_async(request):
        return queued(claim.job_id)
    job = await wait_for_job(deps, claim.job_id, settings.create_wait)
    if job.state == JobState.COMPLETE:
        msg = "success" if claim.kind == "new" else "room already exists"
        return room_reply(msg, completed_room_info(job, await deps.store.session(req.room_id)))
    if job.state == JobState.FAILED:
        return failure(StatusCode.INTERNAL_SERVER_ERROR, job.msg or "can't create room")
    extra = {"retrying": job.last_error} if job.last_error else {}
    return queued(claim.job_id, **extra)


def scheduled_reply(res: Scheduled) -> web.Response:
    """202: the room waits for its start time (a repeat of the same schedule answers the same)."""
    return ok("scheduled", http_status=202, job_id=res.job_id, start_at=res.start_at)
