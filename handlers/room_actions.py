"""Acting on a room: `endRoom` (which also cancels a schedule) and `getJoinToken`."""

from __future__ import annotations

import datetime
import json

from aiohttp import web

from handlers.params import boolean, request_object, room_id_of, text
from handlers.replies import ApiError, failure, ok
from handlers.state import DEPS, LOG_FIELDS, body_of
from worker.livekit import LiveKitError
from worker.rooms.ending import end_room
from worker.rooms.records import LIVE_STATES
from worker.rooms.scheduled import cancel

INVALID = "INVALID_PARAMETERS"


async def end(request: web.Request) -> web.Response:
    """End the session now: DeleteRoom in LiveKit, state `ended`, one `session_ended`.

    A room that is not live but scheduled has its schedule cancelled (`room_cancelled`).
    """
    deps = request.app[DEPS]
    room_id = room_id_of(body_of(request))
    request[LOG_FIELDS] = {"room_id": room_id}
    try:
        result = await end_room(deps, room_id, "ended by the API (endRoom)")
    except LiveKitError as exc:
        raise ApiError("INTERNAL_SERVER_ERROR", f"can't end room: {exc}") from None
    if result != "ended" and await cancel(deps, room_id):
        # Not live, but scheduled: the schedule is what there is to end.
        return ok("scheduled room cancelled")
    if result == "not_found":
        return failure("ROOM_NOT_FOUND", "room not found")
    if result == "not_active":
        return failure("ROOM_NOT_ACTIVE", "room is not active")
    return ok("room ended")


async def join_token(request: web.Request) -> web.Response:
    """A LiveKit access token for one user of a live room."""
    deps = request.app[DEPS]
    body = request_object(body_of(request))
    room_id = room_id_of(body)
    request[LOG_FIELDS] = {"room_id": room_id}
    user = body.get("user_info")
    if not isinstance(user, dict):
        raise ApiError(
            INVALID, "user_info: is required" if user is None else "user_info: must be an object"
        )
    name = text(user.get("name"), "user_info.name", required=True)
    user_id = text(user.get("user_id"), "user_info.user_id", required=True)
    is_admin = boolean(user.get("is_admin"), "user_info.is_admin")
    is_hidden = boolean(user.get("is_hidden"), "user_info.is_hidden")
    user_metadata = user.get("user_metadata")
    if user_metadata is not None and not isinstance(user_metadata, dict):
        raise ApiError(INVALID, "user_info.user_metadata: must be an object")
    record = await deps.store.room(room_id)
    if record.get("state") not in LIVE_STATES:
        return failure("ROOM_NOT_ACTIVE", "room is not active. create room first")
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


def setup(app: web.Application) -> None:
    """Register the action routes."""
    app.router.add_post("/auth/room/endRoom", end)
    app.router.add_post("/auth/room/getJoinToken", join_token)
