"""`/auth/recording/*`: the recordings roomkeeper has seen, in plugNmeet's shapes.

Files stay where LiveKit's egress wrote them (`ROOMKEEPER_RECORDING_OUTPUT`): roomkeeper lists
them and their sessions, but neither deletes nor serves them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from handlers.params import INVALID, choice, integer, request_object, room_ids_of, text
from handlers.replies import ApiError, failure, ok
from handlers.state import DEPS, LOG_FIELDS, body_of
from worker import keys
from worker.rooms.recording_log import recording, recording_view, recordings

MAX_ROOM_IDS = 1000
NOT_HERE = (
    "not supported here: recordings are files in your egress storage (their file_path); "
    "delete or serve them from there"
)


def _record_id(body: dict[str, Any]) -> str:
    record_id = text(body.get("record_id"), "record_id", required=True)
    if not record_id.isascii() or not record_id.replace("_", "").isalnum():
        raise ApiError(INVALID, "record_id: must be an egress id such as EG_...")
    return record_id


async def fetch(request: web.Request) -> web.Response:
    """Finished recordings, newest first by default; `from`/`limit` page through them."""
    deps = request.app[DEPS]
    body = request_object(body_of(request))
    room_ids = room_ids_of(body.get("room_ids"), "room_ids", limit=MAX_ROOM_IDS)
    room_sid = body.get("room_sid")
    if room_sid is not None:
        room_sid = text(room_sid, "room_sid", required=True)
    start = integer(body.get("from", body.get("from_")), "from", default=0, low=0, high=10_000_000)
    limit = integer(body.get("limit"), "limit", default=20, low=1, high=100)
    order_by = choice(body.get("order_by"), "order_by", ("ASC", "DESC"), "DESC")
    total, page = await recordings(
        deps.redis,
        room_ids,
        room_sid=room_sid,
        offset=start,
        limit=limit,
        newest_first=order_by == "DESC",
        retention_s=deps.settings.past_rooms_retention_days * 86400,
    )
    result = {
        "total_recordings": total,
        "from": start,
        "limit": limit,
        "order_by": order_by,
        "recordings_list": page,
    }
    if not page:
        return ok("no recordings found", result=result)
    return ok(result=result)


async def info(request: web.Request) -> web.Response:
    """One recording and the session it belongs to."""
    deps = request.app[DEPS]
    record_id = _record_id(request_object(body_of(request)))
    request[LOG_FIELDS] = {"record_id": record_id}
    record = await recording(deps.redis, record_id)
    if not record:
        return failure("NOT_FOUND", "recording not found")
    sid = record.get("sid", "")
    past = await deps.redis.hgetall(keys.past_room(sid)) if sid else {}
    session = past or await deps.store.room(record.get("room_id", ""))
    room_info = {
        "room_title": session.get("room_title", session.get("title", "")),
        "room_id": record.get("room_id", ""),
        "room_sid": sid,
        "joined_participants": int(session.get("joined_participants", session.get("joined", 0))),
        "webhook_url": record.get("webhook_url", ""),
        "created": int(float(session.get("created", 0))),
        "ended": int(float(session.get("ended", 0))),
    }
    return ok(recording_info=recording_view(record_id, record), room_info=room_info)


async def not_supported(request: web.Request) -> web.Response:
    """`delete` and `getDownloadToken`: the files are not roomkeeper's to touch."""
    record_id = _record_id(request_object(body_of(request)))
    request[LOG_FIELDS] = {"record_id": record_id}
    return failure("NOT_FOUND", NOT_HERE)


def setup(app: web.Application) -> None:
    """Register the recording routes."""
    app.router.add_post("/auth/recording/fetch", fetch)
    app.router.add_post("/auth/recording/info", info)
    app.router.add_post("/auth/recording/delete", not_supported)
    app.router.add_post("/auth/recording/getDownloadToken", not_supported)
