"""The recordings roomkeeper has seen, read for `/auth/recording/*` in plugNmeet's shapes.

Only what LiveKit's egress events said is known: the file's location and size, not the file.
A recording is listed once its file is ready (`recording_proceeded` was sent for it).
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis

from worker import keys
from worker.rooms.records import Store
from worker.rooms.session import PastSession


def recording_view(egress_id: str, record: dict[str, str]) -> dict[str, Any]:
    """plugNmeet's `RecordingInfo` of one egress record."""
    info = json.loads(record.get("info") or "{}")
    return {
        "record_id": egress_id,
        "room_id": record.get("room_id", ""),
        "room_sid": record.get("sid", ""),
        "file_path": record.get("file_path", ""),
        "file_size": float(record.get("file_size") or 0),
        "creation_time": int(float(record.get("started") or 0)),
        "room_creation_time": int(info.get("creation_time") or 0),
    }


async def recording(redis: Redis, egress_id: str) -> dict[str, str]:
    """One egress record ({} when unknown, expired, or not a recording with a file)."""
    record: dict[str, str] = await redis.hgetall(keys.egress(egress_id))
    return record if record.get("file_path") else {}


async def described(store: Store, egress_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """One recording and its session, as `recording/info` answers them (None: not found)."""
    record = await recording(store.redis, egress_id)
    if not record:
        return None
    sid, room_id = record.get("sid", ""), record.get("room_id", "")
    past = await store.past_session(sid)
    if past is None:  # its session has not ended (or was never filed): the room's current one
        current = await store.session(room_id)
        past = PastSession.of(current, ended=current.ended, reason=current.end_reason)
    room_info = {
        **past.view(),
        "room_id": room_id,
        "room_sid": sid,
        "webhook_url": record.get("webhook_url", ""),
    }
    return recording_view(egress_id, record), room_info


async def recordings(
    redis: Redis,
    room_ids: list[str],
    *,
    room_sid: str | None,
    offset: int,
    limit: int,
    newest_first: bool,
    retention_s: float,
) -> tuple[int, list[dict[str, Any]]]:
    """Finished recordings (of `room_ids`, or all; of one session if `room_sid`): total, a page."""
    cutoff = time.time() - retention_s
    await redis.zremrangebyscore(keys.RECORDINGS, "-inf", f"({cutoff}")
    async with redis.pipeline(transaction=False) as pipe:
        for index in [keys.recordings_by_room(r) for r in room_ids] or [keys.RECORDINGS]:
            pipe.zrangebyscore(index, cutoff, "+inf", withscores=True)
        rows = await pipe.execute()
    entries = sorted({(score, egress_id) for found in rows for egress_id, score in found})
    if newest_first:
        entries.reverse()
    async with redis.pipeline(transaction=False) as pipe:
        for _, egress_id in entries:
            pipe.hgetall(keys.egress(egress_id))
        records: list[dict[str, str]] = await pipe.execute()
    views = [
        recording_view(egress_id, record)
        for (_, egress_id), record in zip(entries, records, strict=True)
        if record.get("file_path") and (room_sid is None or record.get("sid") == room_sid)
    ]
    return len(views), views[offset : offset + limit]
