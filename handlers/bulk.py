"""Bulk creation and job status (`/auth/room/createBulk`, `/auth/job/status`).

`createBulk` validates every room with the single create's rules and submits the valid ones
(`worker.rooms.submit`: claimed and queued in one Redis round trip). Each room is reported
on its own, in request order:
- queued now: `accepted: true` and its `job_id`;
- with a `start_at` beyond the lead: `accepted: true`, its `job_id`, msg `scheduled`, `start_at`
  (`worker.rooms.scheduled`; a repeat of the same schedule answers the same);
- a create of it already queued: `accepted: true`, that job's `job_id`, msg `create already queued`;
- already active: `accepted: false`, msg `room already exists`, and its `room_info` (nothing to
  do, so nothing was accepted; the room is there, as a single create would answer);
- invalid, repeated in the call, or ending: `accepted: false` and a `msg` saying why;
- refused by a full Redis (maxmemory) while others of the call were stored: `accepted: false`,
  msg `storage full: this room was not accepted, retry later`. When Redis stored none of the
  call, the whole call answers `status: false`, `storage full, nothing was accepted`.

With `"dry_run": true` every room gets the same checks and nothing is claimed or queued: a valid
room is reported `accepted: true, msg: "valid (dry run: nothing was claimed)"`, HTTP 200.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from handlers.models import BulkRequest, JobStatusRequest
from handlers.replies import ApiError, StatusCode, ok
from handlers.rooms import create_limits, created_room_info
from handlers.state import DEPS, LOG_FIELDS, SETTINGS
from worker import keys
from worker.rooms.records import CreateClaim
from worker.rooms.request import UNITS, CreateRoom, CreateRoomRequest
from worker.rooms.scheduled import Scheduled, is_scheduled
from worker.rooms.session import CreateJob, JobState
from worker.rooms.submit import submit_or_schedule
from worker.wire import WireInvalid, validate

# plugNmeet's status codes have no "try later"; a full queue is the service's own limit.
QUEUE_FULL = StatusCode.INTERNAL_SERVER_ERROR
# Redis at maxmemory refused this room's claim (others of the call may have been stored).
ROOM_NOT_STORED = "storage full: this room was not accepted, retry later"
MAX_ECHOED_ID = 256
YIELD_EVERY = 100


def _echo_id(item: Any) -> str:
    """The room_id an invalid item names, to help the caller match it (bounded)."""
    room_id = item.get("room_id") if isinstance(item, dict) else None
    return room_id[:MAX_ECHOED_ID] if isinstance(room_id, str) else ""


def _rejected(room_id: str, msg: str, **extra: Any) -> dict[str, Any]:
    return {"room_id": room_id, "accepted": False, "msg": msg, **extra}


async def _validate(
    rooms: list[Any], context: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[tuple[int, CreateRoom]]]:
    """Each room checked like a single create: (results so far, the valid ones by position).

    The route's reader has already respelled every room (names, protojson forms, presence).
    """
    results: list[dict[str, Any]] = [{} for _ in rooms]
    valid: list[tuple[int, CreateRoom]] = []
    first_at: dict[str, int] = {}
    for i, item in enumerate(rooms):
        if i and i % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # a thousand validations take a while; let others run
        try:
            req = validate(CreateRoomRequest, item, context, UNITS).room
        except WireInvalid as exc:
            extra = {"errors": exc.errors} if len(exc.errors) > 1 else {}
            results[i] = _rejected(_echo_id(item), exc.msg, **extra)
            continue
        if req.room_id in first_at:
            msg = f"room_id repeated in this call (first used at rooms[{first_at[req.room_id]}])"
            results[i] = _rejected(req.room_id, msg)
            continue
        first_at[req.room_id] = i
        valid.append((i, req))
    return results, valid


def _result(room_id: str, claim: CreateClaim | Scheduled) -> dict[str, Any]:
    """What one claimed (or scheduled) room reports (see the module docstring)."""
    if isinstance(claim, Scheduled):
        return {
            "room_id": room_id,
            "accepted": True,
            "job_id": claim.job_id,
            "msg": "scheduled",
            "start_at": claim.start_at,
        }
    if claim.kind == "new":
        return {"room_id": room_id, "accepted": True, "job_id": claim.job_id}
    if claim.kind == "pending":
        return {
            "room_id": room_id,
            "accepted": True,
            "job_id": claim.job_id,
            "msg": "create already queued",
        }
    if claim.kind == "exists":
        info = created_room_info(claim.info or {})
        return _rejected(room_id, "room already exists", room_info=info)
    if claim.kind == "full":
        return _rejected(room_id, ROOM_NOT_STORED)
    return _rejected(room_id, "room is ending; create it again once it has ended")


DRY_RUN = "valid (dry run: nothing was claimed)"


async def create_bulk(request: web.Request, body: BulkRequest) -> web.Response:
    """Validate, claim and queue up to `bulk_max_rooms` creates; 202 with one result per room."""
    settings = request.app[SETTINGS]
    deps = request.app[DEPS]
    rooms = body.rooms
    context = {"settings": settings, "limits": create_limits(settings)}
    results, valid = await _validate(rooms, context)
    request[LOG_FIELDS] = {"rooms": len(rooms), "valid": len(valid), "dry_run": body.dry_run}
    if body.dry_run:
        for i, req in valid:
            results[i] = {"room_id": req.room_id, "accepted": True, "msg": DRY_RUN}
        msg = f"{len(valid)} of {len(rooms)} rooms valid (dry run: nothing was claimed)"
        return ok(msg, results=results, dry_run=True)
    now = sum(not is_scheduled(r.start_at, settings.schedule_lead) for _, r in valid)
    if now:
        # A bound, not a reservation: concurrent calls may overshoot it by one call's rooms.
        # Scheduled rooms wait in their own schedule, not in this queue.
        waiting = await deps.store.queued_jobs()
        if waiting + now > settings.queue_max_depth:
            raise ApiError(
                QUEUE_FULL,
                f"queue is full ({waiting} waiting, limit {settings.queue_max_depth}); "
                "nothing was accepted, retry later",
            )
    claims = await submit_or_schedule(deps, [req for _, req in valid])
    for (i, req), claim in zip(valid, claims, strict=True):
        results[i] = _result(req.room_id, claim)
    new = [c.job_id for c in claims if isinstance(c, CreateClaim) and c.kind == "new"]
    later = [c for c in claims if isinstance(c, Scheduled)]
    accepted = [
        c.job_id for c in claims if isinstance(c, CreateClaim) and c.kind in ("new", "pending")
    ]
    waits = [keys.job(j) for j in accepted if j] + [keys.scheduled(c.room_id) for c in later]
    await deps.replicas.confirm(deps.redis, waits)
    request[LOG_FIELDS]["queued"] = len(new)
    request[LOG_FIELDS]["scheduled"] = len(later)
    msg = f"{len(new)} of {len(rooms)} rooms queued"
    if later:
        msg += f", {len(later)} scheduled"
    return ok(msg, http_status=202, results=results)


def _job_view(job: CreateJob, room_info: dict[str, Any]) -> dict[str, Any]:
    """One job as `job/status` reports it (`room_info`: the room a complete job made)."""
    if job.state is None:
        return {
            "job_id": job.job_id,
            "room_id": "",
            "state": "not_found",
            "msg": "no such job (unknown, or its record expired)",
        }
    view: dict[str, Any] = {"job_id": job.job_id, "room_id": job.room_id, "state": job.state.value}
    if job.start_at:
        view["start_at"] = job.start_at
    if job.state == JobState.COMPLETE:
        view["room_info"] = created_room_info(room_info)
        if job.msg:  # a schedule that found its room live: `room already exists`
            view["msg"] = job.msg
    elif job.state in (JobState.FAILED, JobState.CANCELLED):
        view["msg"] = job.msg or "can't create room"
    elif job.last_error:
        view["msg"] = f"retrying after: {job.last_error}"
    return view


async def job_status(request: web.Request, body: JobStatusRequest) -> web.Response:
    """The state of up to `bulk_max_rooms` create jobs, in request order."""
    statuses = await request.app[DEPS].store.job_statuses(body.job_ids)
    return ok(jobs=[_job_view(job, room_info) for job, room_info in statuses])
