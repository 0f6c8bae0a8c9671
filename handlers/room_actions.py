"""Acting on a room: `endRoom` (which also cancels a schedule) and `getJoinToken`."""

from __future__ import annotations

import datetime
import json

from aiohttp import web

from handlers.models import JoinTokenRequest, RoomIdRequest
from handlers.replies import ApiError, StatusCode, failure, ok
from handlers.state import DEPS, LOG_FIELDS
from worker.livekit import LiveKitError
from worker.rooms.ending import end_room
from worker.rooms.scheduled import cancel


async def end(request: web.Request, body: RoomIdRequest) -> web.Response:
    """End the session now: DeleteRoom in LiveKit, state `ended`, one `session_ended`.

    A room that is not live but scheduled has its schedule cancelled (`room_cancelled`).
    """
    deps = request.app[DEPS]
    room_id = body.room_id
    request[LOG_FIELDS] = {"room_id": room_id}
    try:
        result = await end_room(deps, room_id, "ended_by_api")
    except LiveKitError as exc:
        raise ApiError(StatusCode.INTERNAL_SERVER_ERROR, f"can't end room: {exc}") from None
    if result != "ended" and await cancel(deps, room_id):
        # Not live, but scheduled: the schedule is what there is to end.
        return ok("scheduled room cancelled")
    if result == "not_found":
        return failure(StatusCode.ROOM_NOT_FOUND, "room not found")
    if result == "not_active":
        return failure(StatusCode.ROOM_NOT_ACTIVE, "room is not active")
    return ok("room ended")


async def join_token(request: web.Request, body: JoinTokenRequest) -> web.Response:
    """A LiveKit access token for one user of a live room."""
    deps = request.app[DEPS]
    room_id = body.room_id
    request[LOG_FIELDS] = {"room_id": room_id}
    user = body.user_info
    name, user_id, is_admin, is_hidden = user.name, user.user_id, user.is_admin, user.is_hidden
    user_metadata = user.user_metadata
    if not (await deps.store.session(room_id)).live:
        return failure(StatusCode.ROOM_NOT_ACTIVE, "room is not active. create room first")
    metadata = {
        **(user_metadata or {}),
        "is_admin": is_admin,
        "is_hidden": is_hidden,
    }
    token = deps.livekit.join_token(
        room_id,
        identity=user_id,
        name=name,
        is_admin=is_admin,
        is_hidden=is_hidden,
        metadata=json.dumps(metadata, separators=(",", ":")),
        ttl=datetime.timedelta(seconds=deps.settings.join_token_ttl),
    )
    return ok(token=token)
