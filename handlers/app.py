"""The API's one way in: `create_app(settings)`, its shared state and its middlewares.

Errors are mapped at this edge only: `ApiError` becomes the plugNmeet body, anything unexpected
becomes `INTERNAL_SERVER_ERROR` (logged with the request id), never a traceback or a 500.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from handlers import (
    bulk,
    console,
    deliveries,
    livekit_events,
    openapi,
    ops,
    room_actions,
    room_queries,
    rooms,
)
from handlers.auth import authenticate
from handlers.jsonbody import BadJson, parse_json
from handlers.replies import STATUS_CODE, ApiError, failure
from handlers.state import BODY, DEPS, DRAINING, INBOX, LOG_FIELDS, SETTINGS
from worker.deps import open_deps
from worker.logs import get_logger
from worker.metrics import REQUEST_SECONDS, REQUESTS
from worker.rooms.livekit_events import Inbox
from worker.settings import Settings

log = get_logger("roomkeeper.api")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, one log line per request, and metrics by route and status_code."""
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    started = time.perf_counter()
    route = _route_name(request)
    status_code = ""
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        response.headers["X-Request-Id"] = request_id
        status_code = response.get(STATUS_CODE, "")
        elapsed = time.perf_counter() - started
        REQUESTS.labels(route, status_code, str(response.status)).inc()
        REQUEST_SECONDS.labels(route).observe(elapsed)
        log.info(
            "request",
            method=request.method,
            route=route,
            http_status=response.status,
            status_code=status_code or None,
            duration_ms=round(elapsed * 1000, 2),
            **request.get(LOG_FIELDS, {}),
        )
        if isinstance(response, web.HTTPException):
            raise response
        return response


@web.middleware
async def plugnmeet(request: web.Request, handler: Handler) -> web.StreamResponse:
    """For `/auth/*`: size and type checks, signature over the raw body, JSON, error mapping."""
    if not request.path.startswith("/auth/"):
        return await handler(request)
    settings = request.app[SETTINGS]
    try:
        if request.method != "POST":
            raise ApiError("INVALID_PARAMETERS", "only POST is supported on this route", 405)
        if request.content_length is not None and request.content_length > settings.max_body_bytes:
            raise _too_large(settings)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _too_large(settings) from None
        authenticate(
            request.headers,
            raw,
            settings.api_key,
            settings.api_secret.get_secret_value(),
        )
        if request.content_type != "application/json":
            raise ApiError(
                "INVALID_PARAMETERS",
                f"Content-Type must be application/json, not {request.content_type or 'none'}",
                415,
            )
        try:
            request[BODY] = parse_json(raw)
        except BadJson as exc:
            raise ApiError("INVALID_PARAMETERS", f"invalid JSON body: {exc}") from None
        return await handler(request)
    except ApiError as exc:
        return failure(exc.status_code, exc.msg, http_status=exc.http_status)
    except RedisError:
        log.exception("redis error")
        return failure("INTERNAL_SERVER_ERROR", "storage unavailable, try again shortly")
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unexpected error")
        return failure("INTERNAL_SERVER_ERROR", "internal error; the request id is in X-Request-Id")


def _too_large(settings: Settings) -> ApiError:
    return ApiError(
        "INVALID_PARAMETERS", f"request body is larger than {settings.max_body_bytes} bytes", 413
    )


def create_app(settings: Settings) -> web.Application:
    """The API application; Redis, arq and LiveKit clients live for the app's lifetime."""
    app = web.Application(
        middlewares=[observe, plugnmeet],
        # aiohttp refuses larger bodies itself; one byte more lets us tell "too large" apart.
        client_max_size=settings.max_body_bytes + 1,
    )
    app[SETTINGS] = settings
    app[DRAINING] = asyncio.Event()

    async def clients(app: web.Application) -> AsyncIterator[None]:
        deps = await open_deps(settings)
        app[DEPS] = deps
        app[INBOX] = Inbox(deps.inbound)
        yield
        await deps.aclose()

    app.cleanup_ctx.append(clients)
    routes = (
        rooms,
        room_queries,
        room_actions,
        bulk,
        deliveries,
        livekit_events,
        ops,
        openapi,
        console,
    )
    for module in routes:
        module.setup(app)
    return app
