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


class CreateAnswer(Common):
    """Create: the room (sync), or `job_id` when queued (202)."""

    room_info: RoomInfo | None = None
    roomInfo: RoomInfo | None = None  # the seed document's name for room_info
    job_id: str | None = None
    retrying: str | None = None


class RoomIdRequest(_Doc):
    """A request naming one room."""

    room_id: str


class ActiveAnswer(Common):
    """isRoomActive (`is_active` is absent when the request itself was invalid)."""

    is_active: bool | None = None


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

    rooms: list[CreateRoomRequest]


class BulkResult(_Doc):
    """One room's fate, in request order."""

    room_id: str | None = None
    accepted: bool
    job_id: str | None = None
    msg: str | None = None


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
    state: Literal["queued", "in_progress", "complete", "failed", "not_found"]
    room_info: RoomInfo | None = None
    msg: str | None = None


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
    """webhook/redeliver: ids; a room since a time; or a URL over a time range."""

    delivery_ids: list[str] | None = None
    room_id: str | None = None
    url: str | None = None
    since: float | None = Field(None, description="unix seconds")
    until: float | None = Field(None, description="unix seconds, with url")
    state: Literal["dead", "all"] | None = Field(None, description="with url; default dead")
    cursor: str | None = Field(None, description="with url: next_cursor of the previous call")


class RedeliverResult(_Doc):
    """What happened to one delivery."""

    delivery_id: str
    result: Literal["queued", "already delivered", "not found"]


class RedeliverAnswer(Common):
    """webhook/redeliver."""

    queued: int | None = None
    delivery_ids: list[str] | None = None
    results: list[RedeliverResult] | None = None
    next_cursor: str | None = Field(None, description="by url: more remain, call again with it")


class TestSendRequest(_Doc):
    """webhook/test."""

    url: str


class TestSendAnswer(Common):
    """webhook/test: the attempt's outcome."""

    event_id: str | None = None
    delivered: bool | None = None
    attempt: Attempt | None = None


# route → (summary, request model, {HTTP status: answer model})
AUTH_ROUTES: dict[str, tuple[str, type[BaseModel] | None, dict[int, type[BaseModel]]]] = {
    "/auth/room/create": (
        "Create a room", CreateRoomRequest, {200: CreateAnswer, 202: CreateAnswer}
    ),
    "/auth/room/isRoomActive": ("Is a room active", RoomIdRequest, {200: ActiveAnswer}),
    "/auth/room/getActiveRoomInfo": ("One active room", RoomIdRequest, {200: ActiveRoomAnswer}),
    "/auth/room/getActiveRoomsInfo": ("Every active room", None, {200: ActiveRoomsAnswer}),
    "/auth/room/endRoom": ("End a room now", RoomIdRequest, {200: Common}),
    "/auth/room/fetchPastRooms": ("Ended sessions", PastRoomsRequest, {200: PastRoomsAnswer}),
    "/auth/room/getJoinToken": ("A LiveKit join token", JoinTokenRequest, {200: JoinTokenAnswer}),
    "/auth/room/createBulk": ("Create many rooms", BulkRequest, {200: BulkAnswer, 202: BulkAnswer}),
    "/auth/job/status": ("Create jobs' states", JobStatusRequest, {200: JobStatusAnswer}),
    "/auth/webhook/deliveries": ("Webhook deliveries", DeliveriesRequest, {200: DeliveriesAnswer}),
    "/auth/webhook/redeliver": ("Send deliveries again", RedeliverRequest, {200: RedeliverAnswer}),
    "/auth/webhook/test": ("Send a webhook_test event now", TestSendRequest, {200: TestSendAnswer}),
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
    paths |= _console_paths()
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
                "consoleBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "API key and secret, or any user with "
                    "ROOMKEEPER_CONSOLE_PASSWORD",
                },
            },
        },
    }


CONSOLE_PAGES = {
    "/console/": "Overview",
    "/console/rooms": "Active rooms",
    "/console/scheduled": "Scheduled rooms",
    "/console/deliveries": "Deliveries by state, with attempts",
    "/console/hosts": "Target hosts: breaker state and rate",
}
CONSOLE_ACTIONS = {
    "/console/redeliver": "Redeliver one delivery (form: csrf, delivery_id)",
    "/console/redeliver-host": "Redeliver every dead delivery of a host (form: csrf, host)",
    "/console/test": "Send a webhook_test event (form: csrf, url)",
}


def _console_paths() -> dict[str, Any]:
    """The operator console: HTML behind HTTP Basic; its forms carry a CSRF token."""
    html = {"text/html": {"schema": {"type": "string"}}}
    denied = {"401": {"description": "no or wrong credentials", "content": _text()}}
    paths: dict[str, Any] = {}
    for path, summary in CONSOLE_PAGES.items():
        paths[path] = {
            "get": {
                "summary": f"Console: {summary}",
                "security": [{"consoleBasic": []}],
                "responses": {"200": {"description": "HTML", "content": html}} | denied,
            }
        }
    form = {
        "application/x-www-form-urlencoded": {
            "schema": {"type": "object", "additionalProperties": {"type": "string"}}
        }
    }
    for path, summary in CONSOLE_ACTIONS.items():
        paths[path] = {
            "post": {
                "summary": f"Console: {summary}",
                "security": [{"consoleBasic": []}],
                "requestBody": {"required": True, "content": form},
                "responses": {
                    "200": {"description": "HTML", "content": html},
                    "303": {"description": "done; back to the page"},
                    "403": {"description": "missing or wrong CSRF token", "content": _text()},
                }
                | denied,
            }
        }
    return paths


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
