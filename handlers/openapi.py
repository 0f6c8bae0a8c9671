"""`GET /openapi.json`: the API described.

The create request's schema is generated from the very models that validate it
(`worker.rooms.request.CreateRoomRequest`); the rest are pydantic models written here. A test
keeps the two honest: every route the app serves is described, and schemathesis checks real answers
against these schemas.
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from worker import __version__
from worker.rooms.request import CreateRoomRequest

StatusCode = Literal[
    "SUCCESS",
    "PERMISSION_DENIED",
    "NOT_FOUND",
    "CONFLICT",
    "INVALID_TOKEN_OR_SIGNATURE",
    "INVALID_API_KEY",
    "INTERNAL_SERVER_ERROR",
    "INVALID_PARAMETERS",
    "MISSING_REQUIRED_PARAMETER",
    "ROOM_NOT_FOUND",
    "ROOM_NOT_ACTIVE",
]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class Common(_Doc):
    """Every `/auth/*` answer: plugNmeet's convention."""

    status: bool
    msg: str
    status_code: StatusCode


class RoomInfo(_Doc):
    """The LiveKit room, as `room_info` and `roomInfo`."""

    sid: str
    name: str
    max_participants: int
    empty_timeout: int
    creation_time: int
    turn_password: str
    enabled_codecs: list[dict[str, str]]
    metadata: str = Field(description="the normalised metadata, as JSON text")


class CreateRequest(CreateRoomRequest):
    """A create request; a `start_at` beyond ROOMKEEPER_SCHEDULE_LEAD schedules the room."""

    start_at: int | str | None = Field(
        None,
        description="unix seconds (also `startAt`, or a string of digits): the room is created "
        "ROOMKEEPER_SCHEDULE_LEAD seconds before; past or near = now; at most "
        "ROOMKEEPER_SCHEDULE_MAX_AHEAD ahead",
    )


class CreateAnswer(Common):
    """Create: the room (sync), `job_id` when queued (202), or `job_id` and `start_at` when
    scheduled (202, msg `scheduled`)."""

    room_info: RoomInfo | None = None
    roomInfo: RoomInfo | None = None  # the seed document's name for room_info
    job_id: str | None = None
    retrying: str | None = None
    start_at: int | None = None


class RoomIdRequest(_Doc):
    """A request naming one room."""

    room_id: str


class ActiveAnswer(Common):
    """isRoomActive (`is_active` is absent when the request itself was invalid); a room that is
    not live but scheduled answers msg `room is scheduled` with its `start_at`."""

    is_active: bool | None = None
    start_at: int | None = None


class ActiveRoomInfo(_Doc):
    """plugNmeet's ActiveRoomInfo."""

    room_title: str
    room_id: str
    sid: str
    joined_participants: int
    is_running: bool
    is_recording: bool
    is_active_rtmp: bool
    webhook_url: str
    creation_time: int
    metadata: str


class ActiveRoom(_Doc):
    """A live room with LiveKit's ParticipantInfo of everyone in it."""

    room_info: ActiveRoomInfo
    participants_info: list[dict[str, Any]]


class ActiveRoomAnswer(Common):
    """getActiveRoomInfo."""

    room: ActiveRoom | None = None


class ActiveRoomsAnswer(Common):
    """getActiveRoomsInfo."""

    rooms: list[ActiveRoom] | None = None


class PastRoomsRequest(_Doc):
    """fetchPastRooms (`from_` is accepted for the Python SDK)."""

    room_ids: list[str] | None = None
    from_: int | None = Field(None, alias="from")
    limit: int | None = Field(None, ge=1, le=100)
    order_by: Literal["ASC", "DESC"] | None = None


class PastRoom(_Doc):
    """One ended session."""

    room_title: str
    room_id: str
    room_sid: str
    joined_participants: int
    webhook_url: str
    created: int
    ended: int


class PastRoomsResult(_Doc):
    """A page of past rooms."""

    total_rooms: int
    from_: int = Field(alias="from")
    limit: int
    order_by: Literal["ASC", "DESC"]
    rooms_list: list[PastRoom]


class PastRoomsAnswer(Common):
    """fetchPastRooms."""

    result: PastRoomsResult | None = None


class ScheduledRoomsRequest(_Doc):
    """fetchScheduledRooms: of `room_ids` (or all), `from` <= start_at <= `to`, paged."""

    room_ids: list[str] | None = None
    from_: int | None = Field(None, alias="from")
    to: int | None = None
    limit: int | None = Field(None, ge=1, le=100)
    cursor: str | None = None


class ScheduledRoom(_Doc):
    """One room waiting for its start time."""

    room_id: str
    job_id: str
    start_at: int
    room_title: str
    webhook_url: str
    empty_timeout: int
    room_duration: int


class ScheduledRoomsAnswer(Common):
    """fetchScheduledRooms: by start time; `next_cursor` is '' on the last page."""

    rooms: list[ScheduledRoom] | None = None
    next_cursor: str | None = None


class UserInfo(_Doc):
    """Who joins."""

    name: str
    user_id: str
    is_admin: bool = False
    is_hidden: bool = False
    user_metadata: dict[str, Any] | None = None


class JoinTokenRequest(_Doc):
    """getJoinToken."""

    room_id: str
    user_info: UserInfo


class JoinTokenAnswer(Common):
    """A LiveKit access token."""

    token: str | None = None


class BulkRequest(_Doc):
    """createBulk: 1 to 1000 create requests."""

    rooms: list[CreateRequest]


class BulkResult(_Doc):
    """One room's fate, in request order."""

    room_id: str | None = None
    accepted: bool
    job_id: str | None = None
    msg: str | None = None
    start_at: int | None = None


class BulkAnswer(Common):
    """createBulk."""

    results: list[BulkResult] | None = None


class JobStatusRequest(_Doc):
    """job/status."""

    job_ids: list[str]


class JobView(_Doc):
    """One create job."""

    job_id: str
    room_id: str
    state: Literal[
        "scheduled", "queued", "in_progress", "complete", "failed", "cancelled", "not_found"
    ]
    room_info: RoomInfo | None = None
    msg: str | None = None
    start_at: int | None = None


class JobStatusAnswer(Common):
    """job/status."""

    jobs: list[JobView] | None = None


class DeliveriesRequest(_Doc):
    """webhook/deliveries."""

    room_id: str | None = None
    state: Literal["pending", "delivered", "dead"] | None = None
    limit: int | None = None
    cursor: str | None = None


class Attempt(_Doc):
    """One delivery attempt."""

    at: float
    status: int | None = None
    error: str | None = None
    duration_ms: float
    response: str


class Delivery(_Doc):
    """One event to one URL."""

    delivery_id: str
    event_id: str
    event: str
    room_id: str
    url: str
    state: Literal["pending", "delivered", "dead"]
    reason: str | None = None
    attempts: list[Attempt]


class DeliveriesAnswer(Common):
    """webhook/deliveries."""

    deliveries: list[Delivery] | None = None
    next_cursor: str | None = None


class RedeliverRequest(_Doc):
    """webhook/redeliver: ids, or a room since a time."""

    delivery_ids: list[str] | None = None
    room_id: str | None = None
    since: int | None = None


class RedeliverAnswer(Common):
    """webhook/redeliver."""

    queued: int | None = None


# route → (summary, request model, {HTTP status: answer model})
AUTH_ROUTES: dict[str, tuple[str, type[BaseModel] | None, dict[int, type[BaseModel]]]] = {
    "/auth/room/create": (
        "Create a room", CreateRequest, {200: CreateAnswer, 202: CreateAnswer}
    ),
    "/auth/room/isRoomActive": ("Is a room active", RoomIdRequest, {200: ActiveAnswer}),
    "/auth/room/getActiveRoomInfo": ("One active room", RoomIdRequest, {200: ActiveRoomAnswer}),
    "/auth/room/getActiveRoomsInfo": ("Every active room", None, {200: ActiveRoomsAnswer}),
    "/auth/room/endRoom": ("End a room now, or cancel its schedule", RoomIdRequest, {200: Common}),
    "/auth/room/fetchScheduledRooms": (
        "Rooms scheduled ahead", ScheduledRoomsRequest, {200: ScheduledRoomsAnswer}
    ),
    "/auth/room/fetchPastRooms": ("Ended sessions", PastRoomsRequest, {200: PastRoomsAnswer}),
    "/auth/room/getJoinToken": ("A LiveKit join token", JoinTokenRequest, {200: JoinTokenAnswer}),
    "/auth/room/createBulk": ("Create many rooms", BulkRequest, {200: BulkAnswer, 202: BulkAnswer}),
    "/auth/job/status": ("Create jobs' states", JobStatusRequest, {200: JobStatusAnswer}),
    "/auth/webhook/deliveries": ("Webhook deliveries", DeliveriesRequest, {200: DeliveriesAnswer}),
    "/auth/webhook/redeliver": ("Send deliveries again", RedeliverRequest, {200: RedeliverAnswer}),
}  # fmt: skip

_ERRORS = {
    "401": "Authentication failed (plugNmeet body)",
    "405": "Only POST (plugNmeet body)",
    "413": "Body larger than ROOMKEEPER_MAX_BODY_BYTES (plugNmeet body)",
    "415": "Content-Type is not application/json (plugNmeet body)",
}


def _ref(model: type[BaseModel], defs: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    defs.update(schema.pop("$defs", {}))
    defs[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def build_spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    defs: dict[str, Any] = {}
    common = _ref(Common, defs)
    paths: dict[str, Any] = {}
    for path, (summary, request, answers) in AUTH_ROUTES.items():
        body = _ref(request, defs) if request else {"type": "object"}
        responses: dict[str, Any] = {
            str(code): {"description": "plugNmeet answer", "content": _json(_ref(model, defs))}
            for code, model in answers.items()
        }
        responses |= {
            code: {"description": d, "content": _json(common)} for code, d in _ERRORS.items()
        }
        paths[path] = {
            "post": {
                "summary": summary,
                "security": [{"apiKey": [], "hashSignature": []}],
                "requestBody": {"required": True, "content": _json(body)},
                "responses": responses,
            }
        }
    paths["/webhook"] = {
        "post": {
            "summary": "LiveKit's signed events (Authorization: <JWT>, no Bearer)",
            "requestBody": {
                "required": True,
                "content": {"application/webhook+json": {"schema": {"type": "object"}}},
            },
            "responses": {
                "200": {"description": "accepted (or a duplicate)", "content": _text()},
                "400": {"description": "signed, but not an event", "content": _text()},
                "401": {"description": "signature does not verify", "content": _text()},
            },
        }
    }
    for path, summary, codes in (
        ("/healthz", "The process serves", ("200",)),
        ("/readyz", "Redis and LiveKit reachable (503 names which is not)", ("200", "503")),
    ):
        paths[path] = {
            "get": {
                "summary": summary,
                "responses": {
                    c: {"description": summary, "content": _json({"type": "object"})} for c in codes
                },
            }
        }
    paths["/metrics"] = {
        "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}
    }
    paths["/openapi.json"] = {
        "get": {
            "summary": "This document",
            "responses": {"200": {"description": "OpenAPI", "content": _json({"type": "object"})}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "roomkeeper",
            "version": __version__,
            "description": "plugNmeet-compatible room API over LiveKit, with durable webhooks. "
            "Every /auth/* request carries API-KEY and HASH-SIGNATURE: the lowercase hex "
            "HMAC-SHA256 of the raw body keyed with the API secret.",
        },
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "API-KEY"},
                "hashSignature": {"type": "apiKey", "in": "header", "name": "HASH-SIGNATURE"},
            },
        },
    }


def _text() -> dict[str, Any]:
    return {"text/plain": {"schema": {"type": "string"}}}


async def openapi(request: web.Request) -> web.Response:
    """Serve the document."""
    return web.json_response(request.app[SPEC])


SPEC = web.AppKey("openapi", dict)


def setup(app: web.Application) -> None:
    """Build the document once and serve it."""
    app[SPEC] = build_spec()
    app.router.add_get("/openapi.json", openapi)
