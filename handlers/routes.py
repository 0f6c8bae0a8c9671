"""The `/auth` route table: each route declared once, with its handler, request and answer models.

The table drives routing (`setup`), validation (every body is signed, strict JSON, then read by
`worker.wire` into the route's pydantic request model before the handler runs) and
`/openapi.json` (`handlers.openapi` walks `ROUTES`). Adding a route is one entry in `ROUTES`:

    Route("/auth/thing/do", things.do, DoRequest, {200: DoAnswer}, "Do the thing",
          operation_id="doThing"),

with `async def do(request: web.Request, body: DoRequest) -> web.Response` in a module of its
route group, `DoRequest` a pydantic model (mix in `worker.wire.Proto3` if it mirrors a plugNmeet
proto message, so camelCase bodies get proto3 zero values) and `DoAnswer` a `handlers.answers`
model extending `Common`. Raise `ApiError` for a plugNmeet error; answer with `replies.ok`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from handlers import (
    answers,
    bulk,
    deliveries,
    models,
    recordings,
    room_actions,
    room_queries,
    rooms,
)
from handlers.auth import authenticate
from handlers.jsonbody import BadJson, parse_json
from handlers.replies import ApiError, StatusCode, collect_warnings
from handlers.state import SETTINGS
from worker.rooms.request import UNITS, CreateRoomRequest
from worker.settings import Settings
from worker.wire import WireInvalid, read

Handler = Callable[[web.Request, Any], Awaitable[web.StreamResponse]]
Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _single(settings: Settings) -> int:
    return settings.max_body_bytes


def _bulk(settings: Settings) -> int:
    return settings.bulk_max_body_bytes


@dataclass(frozen=True)
class Route:
    """One `/auth` route: POST only, JSON in and out, plugNmeet's auth."""

    path: str
    handler: Handler  # (request, validated body) -> answer
    request: type[BaseModel]
    answers: dict[int, type[BaseModel]]
    summary: str
    max_body: Callable[[Settings], int] = _single  # bytes
    operation_id: str = ""  # what a client generated from /openapi.json names the call


ROUTES: tuple[Route, ...] = (
    Route("/auth/room/create", rooms.create, CreateRoomRequest,
          {200: answers.CreateAnswer, 202: answers.CreateAnswer}, "Create a room",
          operation_id="createRoom"),
    Route("/auth/room/isRoomActive", room_queries.is_room_active, models.RoomIdRequest,
          {200: answers.ActiveAnswer}, "Is a room active", operation_id="isRoomActive"),
    Route("/auth/room/getActiveRoomInfo", room_queries.get_active_room_info,
          models.RoomIdRequest, {200: answers.ActiveRoomAnswer}, "One active room",
          operation_id="getActiveRoomInfo"),
    Route("/auth/room/getActiveRoomsInfo", room_queries.get_active_rooms_info, models.NoRequest,
          {200: answers.ActiveRoomsAnswer}, "Every active room",
          operation_id="getActiveRoomsInfo"),
    Route("/auth/room/endRoom", room_actions.end, models.RoomIdRequest, {200: answers.Common},
          "End a room now, or cancel its schedule", operation_id="endRoom"),
    Route("/auth/room/fetchPastRooms", room_queries.fetch_past_rooms, models.PastRoomsRequest,
          {200: answers.PastRoomsAnswer}, "Ended sessions", operation_id="fetchPastRooms"),
    Route("/auth/room/fetchScheduledRooms", room_queries.fetch_scheduled_rooms,
          models.ScheduledRoomsRequest, {200: answers.ScheduledRoomsAnswer},
          "Rooms scheduled ahead", operation_id="fetchScheduledRooms"),
    Route("/auth/room/getJoinToken", room_actions.join_token, models.JoinTokenRequest,
          {200: answers.JoinTokenAnswer}, "A LiveKit join token", operation_id="getJoinToken"),
    Route("/auth/room/createBulk", bulk.create_bulk, models.BulkRequest,
          {200: answers.BulkAnswer, 202: answers.BulkAnswer}, "Create many rooms", _bulk,
          operation_id="createBulk"),
    Route("/auth/job/status", bulk.job_status, models.JobStatusRequest,
          {200: answers.JobStatusAnswer}, "Create jobs' states", operation_id="jobStatus"),
    Route("/auth/webhook/deliveries", deliveries.deliveries, models.DeliveriesRequest,
          {200: answers.DeliveriesAnswer}, "Webhook deliveries",
          operation_id="webhookDeliveries"),
    Route("/auth/webhook/redeliver", deliveries.redeliver_route, models.RedeliverRequest,
          {200: answers.RedeliverAnswer}, "Send deliveries again",
          operation_id="webhookRedeliver"),
    Route("/auth/webhook/test", deliveries.test_send, models.TestSendRequest,
          {200: answers.TestSendAnswer}, "Send a webhook_test event now",
          operation_id="webhookTest"),
    Route("/auth/recording/fetch", recordings.fetch, models.RecordingsRequest,
          {200: answers.RecordingsAnswer}, "Finished recordings", operation_id="fetchRecordings"),
    Route("/auth/recording/info", recordings.info, models.RecordIdRequest,
          {200: answers.RecordingAnswer}, "One recording and its session",
          operation_id="recordingInfo"),
    Route("/auth/recording/delete", recordings.not_supported, models.RecordIdRequest,
          {200: answers.Common}, recordings.NOT_HERE_SUMMARY, operation_id="deleteRecording"),
    Route("/auth/recording/getDownloadToken", recordings.not_supported, models.RecordIdRequest,
          {200: answers.Common}, recordings.NOT_HERE_SUMMARY,
          operation_id="getRecordingDownloadToken"),
)  # fmt: skip


def largest_body(settings: Settings) -> int:
    """The largest body any route takes (aiohttp's own limit is set just above it)."""
    return max(route.max_body(settings) for route in ROUTES)


def too_large(limit: int) -> ApiError:
    """The 413 answer."""
    return ApiError(
        StatusCode.INVALID_PARAMETERS, f"request body is larger than {limit} bytes", 413
    )


def endpoint(route: Route, settings: Settings, context: dict[str, Any]) -> Endpoint:
    """The aiohttp handler of one route: size, signature, JSON, validation, then its handler."""
    limit = route.max_body(settings)
    key, secret = settings.api_key, settings.api_secret.get_secret_value()

    async def handle(request: web.Request) -> web.StreamResponse:
        warnings = collect_warnings()
        if request.content_length is not None and request.content_length > limit:
            raise too_large(limit)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise too_large(limit) from None
        if len(raw) > limit:
            raise too_large(limit)
        authenticate(request.headers, raw, key, secret)
        if request.content_type != "application/json":
            raise ApiError(
                StatusCode.INVALID_PARAMETERS,
                f"Content-Type must be application/json, not {request.content_type or 'none'}",
                415,
            )
        try:
            data = parse_json(raw)
        except BadJson as exc:
            raise ApiError(StatusCode.INVALID_PARAMETERS, f"invalid JSON body: {exc}") from None
        try:
            got = read(route.request, data, context, UNITS)
        except WireInvalid as exc:
            # `msg` names every broken rule; several are listed one by one in `errors` too.
            extra: dict[str, Any] = {"errors": exc.errors} if len(exc.errors) > 1 else {}
            raise ApiError(StatusCode.INVALID_PARAMETERS, exc.msg, **extra) from None
        warnings.extend(got.warnings)
        return await route.handler(request, got.value)

    return handle


def setup(app: web.Application) -> None:
    """Register every route of the table."""
    settings = app[SETTINGS]
    context = {"settings": settings, "limits": rooms.create_limits(settings)}
    for route in ROUTES:
        app.router.add_post(route.path, endpoint(route, settings, context))
