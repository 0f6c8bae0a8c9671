"""Rooms scheduled for later: accepting, moving, cancelling and listing them.

A create whose `start_at` lies more than `schedule_lead` seconds ahead is not created but kept:
one small hash per room (`rk:scheduled:{room_id}`: job id, start time, the normalised create
request compressed), a member on the durable `sched` schedule due at `start_at - lead` (the
lease-and-claim machinery the timers use; `worker.rooms.firing` works it), a lexical index by start
time for listing, and a job record in state `scheduled` so `job/status` follows the same job id
from scheduled to created. Each change and its event (`room_scheduled`, `room_cancelled`) commit in
one guarded transaction, so concurrent schedules of one room_id agree on one schedule and an event
exists exactly when its cause does. Nothing here scans the schedules: every path touches the rooms
it names, or one page of the index.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import WatchError

from worker import keys
from worker.deps import Deps
from worker.logs import get_logger
from worker.rooms.create import job_request
from worker.rooms.request import CreateRoom
from worker.webhooks.bodies import derived_event_id, new_event_id, notify_body, notify_room

log = get_logger("roomkeeper.scheduled")

FIELDS = ("job_id", "start_at", "idx", "req", "event_id")
# Concurrent writers of one room_id each retry after a conflict; one of them wins every round.
MAX_ROUNDS = 64
Outcome = Literal["new", "moved", "same"]


@dataclass(frozen=True)
class Scheduled:
    """What scheduling one room did: a new schedule, a moved one, or nothing (already so)."""

    room_id: str
    job_id: str
    start_at: int
    kind: Outcome


def is_scheduled(start_at: int | None, lead: float, now: float | None = None) -> bool:
    """Whether a create with this `start_at` waits (True) or is created at once."""
    return start_at is not None and start_at - (time.time() if now is None else now) > lead


def due_ms(start_at: int, lead: float) -> int:
    """When the room is created: `lead` seconds before it starts."""
    return int((start_at - lead) * 1000)


def index_member(start_at: int, room_id: str) -> str:
    """The index entry of a schedule: fixed-width time first, so lexical order is time order."""
    return f"{start_at:011d}|{room_id}"


# A preset dictionary for zlib: a create request with every default, as `job_request` writes
# it. Most of a scheduled request is those defaults, so it packs to tens of bytes instead of
# hundreds, and the whole schedule record stays in Redis's compact (listpack) hash encoding.
# Stored data depends on these exact bytes: never edit them; add a new version beside them.
_ZDICT = (
    b'{"room_id":"room-000000","max_participants":0,"empty_timeout":1800,"room_duration":0,"we'
    b'bhook_url":null,"metadata":"{\\"room_title\\":\\"room-000000\\",\\"room_features\\":{\\"allow_w'
    b'ebcams\\":true,\\"mute_on_start\\":false,\\"allow_screen_share\\":true,\\"allow_rtmp\\":false,\\'
    b'"admin_only_webcams\\":false,\\"allow_view_other_webcams\\":true,\\"allow_view_other_users_l'
    b'ist\\":true,\\"allow_polls\\":true,\\"room_duration\\":0,\\"recording_features\\":{\\"is_allow\\"'
    b':true,\\"is_allow_cloud\\":true,\\"is_allow_local\\":true,\\"enable_auto_cloud_recording\\":fa'
    b'lse},\\"chat_features\\":{\\"allow_chat\\":true,\\"allow_file_upload\\":true},\\"shared_note_pa'
    b'd_features\\":{\\"allowed_shared_note_pad\\":true},\\"whiteboard_features\\":{\\"allowed_white'
    b'board\\":true},\\"external_media_player_features\\":{\\"allowed_external_media_player\\":true'
    b'},\\"waiting_room_features\\":{\\"is_active\\":false},\\"breakout_room_features\\":{\\"is_allow'
    b'\\":true,\\"allowed_number_rooms\\":6},\\"display_external_link_features\\":{\\"is_allow\\":tru'
    b'e}},\\"default_lock_settings\\":{\\"lock_microphone\\":false,\\"lock_webcam\\":false,\\"lock_sc'
    b'reen_sharing\\":true,\\"lock_whiteboard\\":true,\\"lock_shared_notepad\\":true,\\"lock_chat\\":'
    b'false,\\"lock_chat_send_message\\":false,\\"lock_chat_file_share\\":false,\\"lock_private_cha'
    b't\\":false}}"}'
)
_PACKED_V1 = "z1:"


def pack(request_json: str) -> str:
    """A create request as stored while it waits (zlib with the preset dictionary, base64)."""
    squeeze = zlib.compressobj(6, zdict=_ZDICT)
    raw = squeeze.compress(request_json.encode()) + squeeze.flush()
    return _PACKED_V1 + base64.b64encode(raw).decode()


def unpack(packed: str) -> dict[str, Any]:
    """The create request a schedule keeps."""
    if not packed.startswith(_PACKED_V1):
        raise ValueError("unknown packing of a scheduled request")
    expand = zlib.decompressobj(zdict=_ZDICT)
    raw = expand.decompress(base64.b64decode(packed.removeprefix(_PACKED_V1))) + expand.flush()
    request: dict[str, Any] = json.loads(raw)
    return request


def event_room(request: dict[str, Any]) -> dict[str, Any]:
    """The `room` of a `room_scheduled`/`room_cancelled` event: no sid yet, never created."""
    return notify_room(
        {
            "name": request["room_id"],
            "empty_timeout": request["empty_timeout"],
            "max_participants": request["max_participants"],
            "metadata": request["metadata"],
        },
        num_participants=0,
    )


async def _read(redis: Redis, room_ids: list[str]) -> list[dict[str, str]]:
    async with redis.pipeline(transaction=False) as reader:
        for room_id in room_ids:
            reader.hmget(keys.scheduled(room_id), *FIELDS)
        rows = await reader.execute()
    return [{k: v for k, v in zip(FIELDS, row, strict=True) if v is not None} for row in rows]


async def schedule_rooms(deps: Deps, reqs: list[CreateRoom]) -> list[Scheduled]:
    """Schedule each room at its `start_at` (room_ids distinct), or move its schedule there."""
    if not reqs:
        return []
    record_keys = [keys.scheduled(r.room_id) for r in reqs]
    for _ in range(MAX_ROUNDS):
        async with deps.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(*record_keys)
                # Read on another connection: WATCH is armed, so a change after this read still
                # aborts the EXEC below.
                current = await _read(deps.redis, [r.room_id for r in reqs])
                pipe.multi()
                pairs = zip(reqs, current, strict=True)
                results = [_schedule_cmds(pipe, deps, r, c) for r, c in pairs]
                await pipe.execute()
            except WatchError:
                continue
        for res in results:
            if res.kind != "same":
                log.debug(
                    "room scheduled",
                    room_id=res.room_id,
                    job_id=res.job_id,
                    start_at=res.start_at,
                    moved=res.kind == "moved",
                )
        return results
    raise RuntimeError("schedule kept conflicting with concurrent writers; try again")


def _schedule_cmds(pipe: Any, deps: Deps, req: CreateRoom, current: dict[str, str]) -> Scheduled:
    """The writes that put one room on the schedule at `req.start_at` (none if already so)."""
    assert req.start_at is not None
    start_at = req.start_at
    request_json = job_request(req)
    packed = pack(request_json)
    room_key = keys.scheduled(req.room_id)
    job_id = current.get("job_id")
    if job_id and int(current.get("start_at", -1)) == start_at:
        if current.get("req") != packed:  # same time, edited request: keep the newest quietly
            pipe.hset(room_key, "req", packed)
        return Scheduled(req.room_id, job_id, start_at, "same")
    kind: Outcome = "moved" if job_id else "new"
    job_id = job_id or uuid.uuid4().hex
    idx = index_member(start_at, req.room_id)
    if current.get("idx"):
        pipe.zrem(keys.SCHEDULED_BY_START, current["idx"])
    pipe.hset(
        room_key,
        mapping={
            "job_id": job_id,
            "start_at": start_at,
            "idx": idx,
            "req": packed,
            # The id `room_created` will carry once the room exists (kept across moves).
            "event_id": current.get("event_id") or new_event_id(),
        },
    )
    pipe.zadd(keys.SCHEDULED_BY_START, {idx: 0})
    deps.scheduled.add(
        pipe, req.room_id, due_ms(start_at, deps.settings.schedule_lead), replace=True
    )
    deps.store.job_scheduled_cmds(pipe, job_id, req.room_id, start_at, now=time.time())
    if deps.outbox.targets(req.webhook_url):  # the body costs as much as the rest; only if sent
        # A fresh id per change: a move back to an earlier time is news, not a duplicate to drop.
        event_id = new_event_id()
        deps.outbox.emit(
            pipe,
            event_id=event_id,
            event="room_scheduled",
            room_id=req.room_id,
            body=notify_body(
                "room_scheduled",
                event_room(json.loads(request_json)),
                event_id=event_id,
                extra={"start_at": str(start_at)},
            ),
            room_webhook_url=req.webhook_url,
        )
    return Scheduled(req.room_id, job_id, start_at, kind)


def unschedule_cmds(pipe: Any, deps: Deps, room_id: str, idx: str) -> None:
    """Drop a room's schedule: its record, index entry, schedule member and any lease on it."""
    pipe.delete(keys.scheduled(room_id))
    pipe.zrem(keys.SCHEDULED_BY_START, idx)
    pipe.zrem(deps.scheduled.due_key, room_id)
    pipe.hdel(deps.scheduled.lease_key, room_id)


async def cancel(deps: Deps, room_id: str) -> str | None:
    """Cancel a room's schedule (it is never created, `room_cancelled` goes out); its job id."""
    room_key = keys.scheduled(room_id)
    for _ in range(MAX_ROUNDS):
        async with deps.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(room_key)
                [current] = await _read(deps.redis, [room_id])
                if not current.get("job_id"):
                    await pipe.reset()
                    return None
                job_id = current["job_id"]
                request = unpack(current["req"])
                event_id = derived_event_id(job_id, "room_cancelled")
                pipe.multi()
                unschedule_cmds(pipe, deps, room_id, current.get("idx", ""))
                deps.store.job_cancelled_cmds(pipe, job_id, "cancelled by endRoom")
                deps.outbox.emit(
                    pipe,
                    event_id=event_id,
                    event="room_cancelled",
                    room_id=room_id,
                    body=notify_body(
                        "room_cancelled",
                        event_room(request),
                        event_id=event_id,
                        extra={"start_at": str(current.get("start_at", "0"))},
                    ),
                    room_webhook_url=request.get("webhook_url"),
                )
                await pipe.execute()
            except WatchError:
                continue
        log.info("room schedule cancelled", room_id=room_id, job_id=job_id)
        return job_id
    raise RuntimeError("cancel kept conflicting with concurrent writers; try again")


async def scheduled_start(deps: Deps, room_id: str) -> int | None:
    """When a room scheduled ahead starts, unix s (None when it is not scheduled)."""
    [record] = await _read(deps.redis, [room_id])
    return int(record["start_at"]) if record.get("start_at") else None


def listing(room_id: str, record: dict[str, str]) -> dict[str, Any]:
    """One scheduled room as `fetchScheduledRooms` lists it."""
    request = unpack(record["req"])
    metadata = json.loads(request.get("metadata") or "{}")
    return {
        "room_id": room_id,
        "job_id": record["job_id"],
        "start_at": int(record["start_at"]),
        "room_title": str(metadata.get("room_title", "")),
        "webhook_url": request.get("webhook_url") or "",
        "empty_timeout": int(request["empty_timeout"]),
        "room_duration": int(request["room_duration"]),
    }


async def list_scheduled(
    deps: Deps,
    *,
    room_ids: list[str],
    start: int,
    end: int | None,
    limit: int,
    cursor: str,
) -> tuple[list[dict[str, Any]], str]:
    """Scheduled rooms with `start <= start_at <= end`, by start time: (one page, next cursor).

    The cursor is the last index entry returned ('' = from the start, '' back = no more).
    """
    if room_ids:
        records = await _read(deps.redis, room_ids)
        entries = sorted(
            (rec["idx"], room_id)
            for room_id, rec in zip(room_ids, records, strict=True)
            if rec.get("idx")
        )
        low, high = index_member(start, ""), _upper(end)
        entries = [(i, r) for i, r in entries if low <= i < high and (not cursor or i > cursor)]
        page = entries[: limit + 1]
    else:
        lower = (
            f"({cursor}"
            if cursor and cursor >= index_member(start, "")
            else (f"[{index_member(start, '')}")
        )
        upper = f"({_upper(end)}" if end is not None else "+"
        members = await deps.redis.zrangebylex(
            keys.SCHEDULED_BY_START, lower, upper, start=0, num=limit + 1
        )
        page = [(m, m.split("|", 1)[1]) for m in members]
    more = len(page) > limit
    page = page[:limit]
    records = await _read(deps.redis, [r for _, r in page])
    # A schedule fired or cancelled between the index read and this one is simply left out.
    rooms = [listing(r, rec) for (_, r), rec in zip(page, records, strict=True) if rec.get("req")]
    return rooms, (page[-1][0] if more and page else "")


def _upper(end: int | None) -> str:
    """The first index entry past `end` (inclusive bound on start_at)."""
    return index_member(end + 1, "") if end is not None else "~"


async def count(redis: Redis) -> int:
    """How many rooms are scheduled (one ZCARD)."""
    return int(await redis.zcard(keys.SCHEDULED_BY_START))
