"""The API's one way in: `create_app(settings)`, its shared state and its middlewares.

Errors are mapped at this edge only: `ApiError` becomes the plugNmeet body, anything unexpected
becomes `INTERNAL_SERVER_ERROR` (logged with the request id), never a traceback or a 500.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from redis.exceptions import OutOfMemoryError, RedisError

from handlers import console, deliveries, livekit_events, openapi, ops, routes
from handlers.replies import STATUS_CODE, ApiError, StatusCode, failure
from handlers.state import DEPS, DRAINING, INBOX, LOG_FIELDS, REQUEST_LOG, SETTINGS
from worker.deps import open_deps
from worker.logs import get_logger
from worker.metrics import REQUEST_SECONDS, REQUESTS
from worker.replicas import NotReplicated
from worker.rooms.inbox import Inbox
from worker.settings import Settings

log = get_logger("roomkeeper.api")

STORAGE_FULL = "storage full, nothing was accepted; retry later"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


# Labelled metric children by label values: `labels()` hashes and validates its arguments on
# every call, and the set of (route, status_code, http_status) seen is small.
_COUNTED: dict[tuple[str, str, int], Any] = {}
_TIMED: dict[str, Any] = {}


def _counted(route: str, status_code: str, http_status: int) -> Any:
    child = _COUNTED.get((route, status_code, http_status))
    if child is None:
        child = REQUESTS.labels(route, status_code, str(http_status))
        _COUNTED[route, status_code, http_status] = child
    return child


def _timed(route: str) -> Any:
    child = _TIMED.get(route)
    if child is None:
        child = _TIMED[route] = REQUEST_SECONDS.labels(route)
    return child


@web.middleware
async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, one log line per request, metrics by route and status_code; unknown paths
    as JSON; for `/auth/*`: POST only, and the one place errors become answers.

    One middleware, not one per concern: each is a coroutine layer every request passes
    through. Each route's own checks (size, signature, JSON, validation) are in
    `handlers.routes`.
    """
    request_id = request.headers.get("X-Request-Id") or os.urandom(16).hex()
    started = time.perf_counter()
    route = _route_name(request)
    # A connection's requests run in one task (one context): the id is bound and reset here.
    bound = structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        response: web.StreamResponse
        try:
            unknown = _unknown_route(request)
            if unknown is not None:
                response = unknown
            else:
                auth = request.path.startswith("/auth/")
                try:
                    if auth and request.method != "POST":
                        raise ApiError(
                            StatusCode.INVALID_PARAMETERS,
                            "only POST is supported on this route",
                            405,
                        )
                    response = await handler(request)
                except web.HTTPException:
                    raise
                except Exception as exc:
                    if not auth:
                        raise
                    response = _error_answer(exc)
        except web.HTTPException as exc:
            response = exc
        response.headers["X-Request-Id"] = request_id
        status_code = response.get(STATUS_CODE, "")
        elapsed = time.perf_counter() - started
        _counted(route, status_code, response.status).inc()
        _timed(route).observe(elapsed)
        request_log: Any = request.app[REQUEST_LOG]
        if request_log.is_enabled_for(logging.INFO):  # else the line's fields are not built
            request_log.info(
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
    finally:
        structlog.contextvars.reset_contextvars(**bound)


def _unknown_route(request: web.Request) -> web.Response | None:
    """The answer for a path no route serves (None when one does)."""
    if not isinstance(request.match_info.http_exception, web.HTTPNotFound):
        return None
    if request.path.startswith("/auth/"):
        return failure(
            StatusCode.NOT_FOUND,
            f"{request.path}: roomkeeper does not serve this route (its /auth routes are listed "
            "in /openapi.json)",
            http_status=404,
        )
    return failure(StatusCode.NOT_FOUND, f"{request.path}: not found", http_status=404)


def _error_answer(exc: Exception) -> web.Response:
    """An `/auth/*` route's error as a plugNmeet answer (called in its `except` block, so an
    unexpected one is logged with its traceback)."""
    if isinstance(exc, ApiError):
        return failure(exc.status_code, exc.msg, http_status=exc.http_status, **exc.extra)
    if isinstance(exc, NotReplicated):
        log.warning("accepted work not replicated", error=exc.msg)
        return failure(StatusCode.INTERNAL_SERVER_ERROR, exc.msg)
    if isinstance(exc, OutOfMemoryError):
        log.warning("redis is full (maxmemory)")
        return failure(StatusCode.INTERNAL_SERVER_ERROR, STORAGE_FULL)
    if isinstance(exc, RedisError):
        log.exception("redis error")
        return failure(StatusCode.INTERNAL_SERVER_ERROR, "storage unavailable, try again shortly")
    log.exception("unexpected error")
    return failure(
        StatusCode.INTERNAL_SERVER_ERROR, "internal error; the request id is in X-Request-Id"
    )


def create_app(settings: Settings) -> web.Application:
    """The API application; Redis, arq and LiveKit clients live for the app's lifetime."""
    app = web.Application(
        middlewares=[edge],
        # aiohttp refuses larger bodies itself; one byte more lets us tell "too large" apart.
        client_max_size=routes.largest_body(settings) + 1,
    )
    app[SETTINGS] = settings
    app[DRAINING] = asyncio.Event()
    app[REQUEST_LOG] = log.bind()

    async def clients(app: web.Application) -> AsyncIterator[None]:
        deps = await open_deps(settings)
        app[DEPS] = deps
        app[INBOX] = Inbox(deps.inbound)
        yield
        await deps.aclose()

    app.cleanup_ctx.append(clients)
    for module in (routes, deliveries, livekit_events, ops, openapi, console):
        module.setup(app)
    return app
