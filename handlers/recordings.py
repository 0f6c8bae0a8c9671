"""`/auth/recording/*`: the recordings roomkeeper has seen, in plugNmeet's shapes.

Files stay where LiveKit's egress wrote them (`ROOMKEEPER_RECORDING_OUTPUT`): roomkeeper lists
them and their sessions, but neither deletes nor serves them.
"""

from __future__ import annotations

from aiohttp import web

from handlers.models import RecordIdRequest, RecordingsRequest
from handlers.replies import StatusCode, failure, ok
from handlers.state import DEPS, LOG_FIELDS
from worker.rooms.recording_log import described, recordings

NOT_HERE = (
    "not supported here: recordings are files in your egress storage (their file_path); "
    "delete or serve them from there"
)
NOT_HERE_SUMMARY = "Not supported: recordings are files in your egress storage"


async def fetch(request: web.Request, body: RecordingsRequest) -> web.Response:
    """Finished recordings, newest first by default; `from`/`limit` page through them."""
    deps = request.app[DEPS]
    total, page = await recordings(
        deps.redis,
        body.room_ids,
        room_sid=body.room_sid,
        offset=body.from_,
        limit=body.limit,
        newest_first=body.order_by == "DESC",
        retention_s=deps.settings.past_rooms_retention_days * 86400,
    )
    result = {
        "total_recordings": total,
        "from": body.from_,
        "limit": body.limit,
        "order_by": body.order_by,
        "recordings_list": page,
    }
    if not page:
        return ok("no recordings found", result=result)
    return ok(result=result)


async def info(request: web.Request, body: RecordIdRequest) -> web.Response:
    """One recording and the session it belongs to."""
    deps = request.app[DEPS]
    request[LOG_FIELDS] = {"record_id": body.record_id}
    found = await described(deps.store, body.record_id)
    if found is None:
        return failure(StatusCode.NOT_FOUND, "recording not found")
    recording_info, room_info = found
    return ok(recording_info=recording_info, room_info=room_info)


async def not_supported(request: web.Request, body: RecordIdRequest) -> web.Response:
    """`delete` and `getDownloadToken`: the files are not roomkeeper's to touch."""
    request[LOG_FIELDS] = {"record_id": body.record_id}
    return failure(StatusCode.NOT_FOUND, NOT_HERE)
