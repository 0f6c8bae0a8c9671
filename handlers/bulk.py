"""Bulk creation and job status (`/auth/room/createBulk`, `/auth/job/status`).

`createBulk` validates every room with the single create's rules, claims the valid ones in one
Redis round trip and queues them as arq jobs of `create_batch_size` rooms. Each room is reported
on its own, in request order:
- queued now: `accepted: true` and its `job_id`;
- with a `start_at` beyond the lead: `accepted: true`, its `job_id`, msg `scheduled`, `start_at`
  (`worker.rooms.scheduled`; a repeat of the same schedule answers the same);
- a create of it already queued: `accepted: true`, that job's `job_id`, msg `create already queued`;
- already active: `accepted: false`, msg `room already exists`, and its `room_info` (nothing to
  do, so nothing was accepted; the room is there, as a single create would answer);
- invalid, repeated in the call, or ending: `accepted: false` and a `msg` saying why.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from aiohttp import web

from handlers.replies import ApiError, ok
from handlers.rooms import create_limits
from handlers.state import DEPS, LOG_FIELDS, SETTINGS, body_of
from worker import keys
from worker.deps import Deps
from worker.rooms.create import job_request
from worker.rooms.jobs import enqueue_batches
from worker.rooms.records import CreateClaim, Store, api_room_info
from worker.rooms.request import CreateLimits, CreateRoom, RequestInvalid, parse_create_room
from worker.rooms.scheduled import is_scheduled, schedule_rooms
from worker.webhooks.bodies import new_event_id

INVALID = "INVALID_PARAMETERS"
# The contract's status codes have no "try later"; a full queue is the service's own limit.
QUEUE_FULL = "INTERNAL_SERVER_ERROR"
MAX_ECHOED_ID = 256
YIELD_EVERY = 100
MAX_JOB_ID = 256


def _list_field(body: Any, name: str, limit: int) -> list[Any]:
    """`body[name]` as a list of 1..limit items, or the plugNmeet error."""
    if not isinstance(body, dict):
        raise ApiError(INVALID, "request body must be a JSON object")
    items = body.get(name)
    if items is None:
        raise ApiError(INVALID, f"{name}: is required")
    if not isinstance(items, list):
        raise ApiError(INVALID, f"{name}: must be a list")
    if not 1 <= len(items) <= limit:
        raise ApiError(INVALID, f"{name}: must hold 1 to {limit} items, not {len(items)}")
    return items


def _echo_id(item: Any) -> str:
    """The room_id an invalid item names, to help the caller match it (bounded)."""
    room_id = item.get("room_id") if isinstance(item, dict) else None
    return room_id[:MAX_ECHOED_ID] if isinstance(room_id, str) else ""


def _rejected(room_id: str, msg: str, **extra: Any) -> dict[str, Any]:
    return {"room_id": room_id, "accepted": False, "msg": msg, **extra}


async def _validate(
    rooms: list[Any], limits: CreateLimits
) -> tuple[list[dict[str, Any]], list[tuple[int, CreateRoom]]]:
    """Each room checked like a single create: (results so far, the valid ones by position)."""
    results: list[dict[str, Any]] = [{} for _ in rooms]
    valid: list[tuple[int, CreateRoom]] = []
    first_at: dict[str, int] = {}
    for i, item in enumerate(rooms):
        if i and i % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # a thousand validations take a while; let others run
        try:
            req = parse_create_room(item, limits)
        except RequestInvalid as exc:
            results[i] = _rejected(_echo_id(item), exc.msg)
            continue
        if req.room_id in first_at:
            msg = f"room_id repeated in this call (first used at rooms[{first_at[req.room_id]}])"
            results[i] = _rejected(req.room_id, msg)
            continue
        first_at[req.room_id] = i
        valid.append((i, req))
    return results, valid


async def _claim(deps: Deps, valid: list[tuple[int, CreateRoom]]) -> list[CreateClaim]:
    """Claim every valid room's create in one pipeline (one round trip for the whole call)."""
    if not valid:
        return []
    async with deps.redis.pipeline(transaction=False) as pipe:
        for _, req in valid:
            deps.store.claim_create_cmd(
                pipe,
                room_id=req.room_id,
                job_id=uuid.uuid4().hex,
                request=job_request(req),
                event_id=new_event_id(),
            )
        answers = await pipe.execute()
    return [Store.parse_claim(raw) for raw in answers]


def _result(room_id: str, claim: CreateClaim) -> dict[str, Any]:
    """What one claimed room reports (see the module docstring)."""
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
        info = api_room_info(claim.info or {})
        return _rejected(room_id, "room already exists", room_info=info)
    return _rejected(room_id, "room is ending; create it again once it has ended")


async def create_bulk(request: web.Request) -> web.Response:
    """Validate, claim and queue up to `bulk_max_rooms` creates; 202 with one result per room."""
    settings = request.app[SETTINGS]
    deps = request.app[DEPS]
    rooms = _list_field(body_of(request), "rooms", settings.bulk_max_rooms)
    results, valid = await _validate(rooms, create_limits(settings))
    request[LOG_FIELDS] = {"rooms": len(rooms), "valid": len(valid)}
    later = [(i, r) for i, r in valid if is_scheduled(r.start_at, settings.schedule_lead)]
    if later:
        valid = [(i, r) for i, r in valid if not is_scheduled(r.start_at, settings.schedule_lead)]
        done = await schedule_rooms(deps, [r for _, r in later])
        for (i, _), res in zip(later, done, strict=True):
            results[i] = {
                "room_id": res.room_id,
                "accepted": True,
                "job_id": res.job_id,
                "msg": "scheduled",
                "start_at": res.start_at,
            }
    if valid:
        # A bound, not a reservation: concurrent calls may overshoot it by one call's rooms.
        waiting = await deps.store.queued_jobs()
        if waiting + len(valid) > settings.queue_max_depth:
            raise ApiError(
                QUEUE_FULL,
                f"queue is full ({waiting} waiting, limit {settings.queue_max_depth}); "
                "nothing was accepted, retry later",
            )
    claims = await _claim(deps, valid)
    for (i, req), claim in zip(valid, claims, strict=True):
        results[i] = _result(req.room_id, claim)
    new = [c.job_id for c in claims if c.kind == "new" and c.job_id]
    await enqueue_batches(deps, new)
    request[LOG_FIELDS]["queued"] = len(new)
    request[LOG_FIELDS]["scheduled"] = len(later)
    msg = f"{len(new)} of {len(rooms)} rooms queued"
    if later:
        msg += f", {len(later)} scheduled"
    return ok(msg, http_status=202, results=results)


STATUS_FIELDS = ("state", "room_id", "room_info", "msg", "last_error", "start_at")


async def _job_records(redis: Any, job_ids: list[str]) -> list[dict[str, str]]:
    """The fields `job/status` shows, for many jobs in one round trip.

    Not `Store.jobs`: HGETALL would also carry each job's request back, several times the
    bytes, and a CLI following a big bulk asks for a thousand jobs every half second.
    """
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(keys.job(job_id), *STATUS_FIELDS)
        rows = await pipe.execute()
    return [
        {k: v for k, v in zip(STATUS_FIELDS, row, strict=True) if v is not None} for row in rows
    ]


def _job_view(job_id: str, record: dict[str, str]) -> dict[str, Any]:
    """One job as `job/status` reports it."""
    state = record.get("state")
    if not state:
        return {
            "job_id": job_id,
            "room_id": "",
            "state": "not_found",
            "msg": "no such job (unknown, or its record expired)",
        }
    view: dict[str, Any] = {"job_id": job_id, "room_id": record.get("room_id", ""), "state": state}
    if record.get("start_at"):
        view["start_at"] = int(record["start_at"])
    if state == "complete":
        view["room_info"] = api_room_info(json.loads(record.get("room_info") or "{}"))
        if record.get("msg"):
            view["msg"] = record["msg"]
    elif state in ("failed", "cancelled"):
        view["msg"] = record.get("msg") or "can't create room"
    elif record.get("last_error"):
        view["msg"] = f"retrying after: {record['last_error']}"
    return view


async def job_status(request: web.Request) -> web.Response:
    """The state of up to `bulk_max_rooms` create jobs, in request order."""
    settings = request.app[SETTINGS]
    job_ids = _list_field(body_of(request), "job_ids", settings.bulk_max_rooms)
    for i, job_id in enumerate(job_ids):
        if not isinstance(job_id, str) or not 0 < len(job_id) <= MAX_JOB_ID:
            raise ApiError(
                INVALID, f"job_ids[{i}]: must be a string of 1 to {MAX_JOB_ID} characters"
            )
    records = await _job_records(request.app[DEPS].redis, job_ids)
    jobs = [_job_view(j, r) for j, r in zip(job_ids, records, strict=True)]
    return ok(jobs=jobs)


def setup(app: web.Application) -> None:
    """Register the bulk routes."""
    app.router.add_post("/auth/room/createBulk", create_bulk)
    app.router.add_post("/auth/job/status", job_status)
