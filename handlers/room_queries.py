"""Reading rooms: `isRoomActive`, `getActiveRoomInfo`, `getActiveRoomsInfo`, `fetchPastRooms`,
`fetchScheduledRooms`."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from handlers.models import NoRequest, PastRoomsRequest, RoomIdRequest, ScheduledRoomsRequest
from handlers.replies import ApiError, StatusCode, failure, ok
from handlers.state import DEPS, LOG_FIELDS
from worker.deps import Deps
from worker.livekit import LiveKitError
from worker.rooms.scheduled import list_scheduled, scheduled_start
from worker.rooms.session import RoomSession, RoomState

# ListParticipants calls in flight at once when listing every active room.
PARTICIPANT_FETCHES = 16


def active_room_info(session: RoomSession) -> dict[str, Any]:
    """plugNmeet's `ActiveRoomInfo` of a session."""
    info = session.info
    return {
        "room_title": session.title,
        "room_id": info.get("name", ""),
        "sid": session.sid,
        "joined_participants": session.participants,
        "is_running": session.state == RoomState.ACTIVE,
        "is_recording": session.is_recording,
        "is_active_rtmp": session.is_active_rtmp,
        "webhook_url": session.webhook_url,
        "is_breakout_room": False,  # PHP v2 reads these two; roomkeeper has no breakout rooms
        "parent_room_id": "",
        "creation_time": session.created,
        "metadata": info.get("metadata", ""),
    }


async def _participants(deps: Deps, room_id: str) -> list[dict[str, Any]]:
    try:
        return await deps.livekit.list_participants(room_id)
    except LiveKitError as exc:
        raise ApiError(StatusCode.INTERNAL_SERVER_ERROR, f"can't reach livekit: {exc}") from None


async def _live_session(deps: Deps, room_id: str) -> RoomSession:
    session = await deps.store.session(room_id)
    if session.state is None:
        raise ApiError(StatusCode.ROOM_NOT_FOUND, "room not found")
    if not session.live:
        raise ApiError(StatusCode.ROOM_NOT_ACTIVE, "room is not active")
    return session


async def is_room_active(request: web.Request, body: RoomIdRequest) -> web.Response:
    """Whether `room_id` has a live session."""
    room_id = body.room_id
    request[LOG_FIELDS] = {"room_id": room_id}
    deps = request.app[DEPS]
    if (await deps.store.session(room_id)).live:
        return ok("room is active", is_active=True)
    start_at = await scheduled_start(deps, room_id)
    if start_at is not None:
        return failure(
            StatusCode.ROOM_NOT_ACTIVE, "room is scheduled", is_active=False, start_at=start_at
        )
    return failure(StatusCode.ROOM_NOT_ACTIVE, "room is not active", is_active=False)


async def get_active_room_info(request: web.Request, body: RoomIdRequest) -> web.Response:
    """One live room with its participants (from LiveKit)."""
    deps = request.app[DEPS]
    room_id = body.room_id
    request[LOG_FIELDS] = {"room_id": room_id}
    session = await _live_session(deps, room_id)
    participants = await _participants(deps, room_id)
    return ok(room={"room_info": active_room_info(session), "participants_info": participants})


async def get_active_rooms_info(request: web.Request, body: NoRequest) -> web.Response:
    """Every live room with its participants."""
    deps = request.app[DEPS]
    room_ids = await deps.store.active_room_ids()
    sessions = [s for s in await deps.store.sessions(room_ids) if s.live]
    gate = asyncio.Semaphore(PARTICIPANT_FETCHES)

    async def entry(session: RoomSession) -> dict[str, Any]:
        async with gate:
            participants = await _participants(deps, session.info.get("name", ""))
        return {"room_info": active_room_info(session), "participants_info": participants}

    rooms = await asyncio.gather(*(entry(s) for s in sessions))
    if not rooms:
        return ok("no active room found", rooms=[])
    return ok(rooms=rooms)


async def fetch_past_rooms(request: web.Request, body: PastRoomsRequest) -> web.Response:
    """Ended sessions, newest first by default; `from`/`limit` page through them."""
    deps = request.app[DEPS]
    room_ids, start, limit, order_by = body.room_ids, body.from_, body.limit, body.order_by
    total, sessions = await deps.store.past_rooms(
        room_ids,
        offset=start,
        limit=limit,
        newest_first=order_by == "DESC",
        retention_s=deps.settings.past_rooms_retention_days * 86400,
    )
    rooms = [past.view() for past in sessions]
    result = {
        "total_rooms": total,
        "from": start,
        "limit": limit,
        "order_by": order_by,
        "rooms_list": rooms,
    }
    if not rooms:
        return ok("no info found", result=result)
    return ok(result=result)


async def fetch_scheduled_rooms(request: web.Request, body: ScheduledRoomsRequest) -> web.Response:
    """Scheduled rooms by start time, optionally of `room_ids` and within `from`..`to`, paged."""
    rooms, next_cursor = await list_scheduled(
        request.app[DEPS],
        room_ids=body.room_ids,
        start=body.from_,
        end=body.to,
        limit=body.limit,
        cursor=body.cursor,
    )
    return ok(
        "success" if rooms else "no scheduled room found", rooms=rooms, next_cursor=next_cursor
    )
