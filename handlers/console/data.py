"""What the console shows, read from Redis a page at a time (no read grows with the log).

Rooms page by the active-rooms index, deliveries by the delivery log's own indexes
(`worker.webhooks.log`), hosts by the hosts index. scheduled rooms by their
index by start time (`worker.rooms.scheduled`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from worker import keys
from worker.deps import Deps
from worker.rooms.scheduled import list_scheduled
from worker.rooms.timers import room_timers

PAGE = 50


@dataclass(frozen=True)
class RoomRow:
    """One active room with its timers still due."""

    room_id: str
    title: str
    state: str
    participants: int
    created: float
    timers: list[tuple[str, float]] = field(default_factory=list)  # (kind, due unix s)


async def active_rooms(deps: Deps, offset: int = 0, limit: int = PAGE) -> tuple[list[RoomRow], int]:
    """Active rooms, newest first, one page; and how many there are."""
    redis = deps.redis
    total = int(await redis.zcard(keys.ACTIVE_ROOMS))
    ids = await redis.zrevrange(keys.ACTIVE_ROOMS, offset, offset + limit - 1)
    sessions = await deps.store.sessions(ids)
    wanted: list[tuple[int, str, str]] = []
    for i, session in enumerate(sessions):
        if not session.sid:
            continue
        for t in room_timers(
            session.room_id,
            session.sid,
            creation_ms=session.created_ms or session.created * 1000,
            empty_timeout=session.empty_timeout,
            duration_min=session.duration,
            warnings=deps.settings.session_ending_warnings,
        ):
            wanted.append((i, t.kind, t.member))
    scores = await redis.zmscore(deps.timers.due_key, [m for _, _, m in wanted]) if wanted else []
    rows = [
        RoomRow(s.room_id, s.title, s.state or "?", s.participants, float(s.created))
        for s in sessions
    ]
    for (i, kind, _), score in zip(wanted, scores, strict=True):
        if score is not None:
            rows[i].timers.append((kind, float(score) / 1000))
    return rows, total


async def scheduled_rooms(
    deps: Deps, cursor: str = "", limit: int = PAGE
) -> tuple[list[dict[str, Any]], str]:
    """Rooms scheduled ahead, by start time, one page of their index: (rooms, next cursor)."""
    return await list_scheduled(deps, room_ids=[], start=0, end=None, limit=limit, cursor=cursor)


async def counts(redis: Redis) -> dict[str, int]:
    """The figures on the overview: rooms, deliveries by state, hosts and open breakers."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.ACTIVE_ROOMS)
        pipe.hgetall(keys.DELIVERY_COUNTS)
        pipe.zcard(keys.HOSTS)
        pipe.scard(keys.HOSTS_OPEN)
        pipe.zcard(keys.SCHEDULED_BY_START)
        rooms, by_state, hosts, open_, scheduled = await pipe.execute()
    return {
        "active rooms": int(rooms),
        "scheduled rooms": int(scheduled),
        "pending deliveries": int(by_state.get("pending", 0)),
        "delivered": int(by_state.get("delivered", 0)),
        "dead deliveries": int(by_state.get("dead", 0)),
        "target hosts": int(hosts),
        "breakers open": int(open_),
    }
