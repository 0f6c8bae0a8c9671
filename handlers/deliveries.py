"""Webhook deliveries: listing and redelivery (`/auth/webhook/deliveries`, `/redeliver`).

Both routes sit behind the `/auth/*` middleware (signature, JSON, error mapping); this module
only validates fields, naming each one in its message, and calls the engine in
`worker.webhooks.engine`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from handlers.replies import ApiError, ok
from handlers.state import DEPS, LOG_FIELDS, SETTINGS, WEBHOOK_SESSION, body_of
from worker.webhooks.attempt import make_session
from worker.webhooks.engine import ID_PATTERN, STATES
from worker.webhooks.log import (
    QUEUED,
    list_deliveries,
    redeliver,
    replay,
    room_deliveries_since,
    url_index,
)
from worker.webhooks.testsend import send_test

INVALID = "INVALID_PARAMETERS"
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_REDELIVER = 1000
REPLAY_STATES = ("dead", "all")


def _invalid(msg: str) -> ApiError:
    return ApiError(INVALID, msg)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _invalid("body: must be a JSON object")
    # JSON null means absent, as on the room routes.
    return {k: v for k, v in body.items() if v is not None}


def _room_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid("room_id: must be a non-empty string")
    return value


def _delivery_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise _invalid(f"{field}: not a delivery id (dlv_ and 20 hex digits)")
    return value


def parse_list(body: Any) -> dict[str, Any]:
    """`{room_id?, state?, limit?, cursor?}`, checked; keyword arguments for list_deliveries."""
    data = _object(body)
    args: dict[str, Any] = {"limit": DEFAULT_LIMIT}
    if "room_id" in data:
        args["room_id"] = _room_id(data["room_id"])
    if "state" in data:
        if data["state"] not in STATES:
            raise _invalid(f"state: must be one of {', '.join(STATES)}")
        args["state"] = data["state"]
    if "limit" in data:
        limit = data["limit"]
        if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
            raise _invalid(f"limit: must be an integer from 1 to {MAX_LIMIT}")
        args["limit"] = limit
    if "cursor" in data and data["cursor"] != "":
        cursor = data["cursor"]
        if not isinstance(cursor, str) or not ID_PATTERN.fullmatch(cursor):
            raise _invalid("cursor: not a cursor this API returned (use next_cursor as given)")
        args["cursor"] = cursor
    return args


@dataclass(frozen=True)
class UrlReplay:
    """`{url, since, until?, state?, cursor?}`: a URL's deliveries in a time range."""

    url: str
    since: float
    until: float | None
    state: str
    cursor: str | None


def _unix(data: dict[str, Any], field: str) -> float:
    value = data[field]
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise _invalid(f"{field}: must be unix seconds (a number >= 0)")
    return float(value)


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise _invalid("url: must be an absolute http(s) URL")
    return value


def parse_redeliver(body: Any) -> list[str] | tuple[str, float] | UrlReplay:
    """`{delivery_ids}`, `{room_id, since}` or `{url, since, until?, state?, cursor?}`, checked."""
    data = _object(body)
    forms = [f for f in ("delivery_ids", "room_id", "url") if f in data]
    if len(forms) > 1:
        raise _invalid("give one of delivery_ids, room_id (with since) or url (with since)")
    if "delivery_ids" in data:
        if "since" in data:
            raise _invalid("give either delivery_ids, or room_id with since, not both")
        ids = data["delivery_ids"]
        if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_REDELIVER:
            raise _invalid(f"delivery_ids: must be a list of 1 to {MAX_REDELIVER} delivery ids")
        return [_delivery_id(v, f"delivery_ids[{i}]") for i, v in enumerate(ids)]
    if not forms:
        raise _invalid("delivery_ids, room_id (with since) or url (with since) is required")
    if "since" not in data:
        raise _invalid(f"since: required with {forms[0]} (unix seconds)")
    since = _unix(data, "since")
    if "room_id" in data:
        return _room_id(data["room_id"]), since
    until = _unix(data, "until") if "until" in data else None
    if until is not None and until <= since:
        raise _invalid("until: must be later than since")
    state = data.get("state", "dead")
    if state not in REPLAY_STATES:
        raise _invalid(f"state: must be one of {', '.join(REPLAY_STATES)}")
    cursor = data.get("cursor") or None
    if cursor is not None and (not isinstance(cursor, str) or not ID_PATTERN.fullmatch(cursor)):
        raise _invalid("cursor: not a cursor this API returned (use next_cursor as given)")
    return UrlReplay(_url(data["url"]), since, until, state, cursor)


async def deliveries(request: web.Request) -> web.Response:
    """The delivery log, newest first, with each delivery's attempts; pages by `next_cursor`."""
    args = parse_list(body_of(request))
    if "room_id" in args:
        request[LOG_FIELDS] = {"room_id": args["room_id"]}
    page = await list_deliveries(request.app[DEPS].redis, **args)
    return ok(deliveries=page.deliveries, next_cursor=page.next_cursor)


async def redeliver_route(request: web.Request) -> web.Response:
    """Send finished deliveries again (same event, same `webhook-id`): by id, or a room's since."""
    target = parse_redeliver(body_of(request))
    deps = request.app[DEPS]
    next_cursor = None
    if isinstance(target, UrlReplay):
        done = await replay(
            deps.redis,
            deps.outbox,
            url_index(target.url),
            since=target.since,
            until=target.until,
            state=target.state,
            cursor=target.cursor,
        )
        results, next_cursor = done.results, done.next_cursor
    elif isinstance(target, tuple):
        room_id, since = target
        request[LOG_FIELDS] = {"room_id": room_id}
        ids = await room_deliveries_since(deps.redis, room_id, since)
        results = await redeliver(deps.redis, deps.outbox, ids, delivered_too=True)
    else:
        results = await redeliver(deps.redis, deps.outbox, target)
    queued = [d for d, r in results.items() if r == QUEUED]
    return ok(
        queued=len(queued),
        delivery_ids=queued,
        results=[{"delivery_id": d, "result": r} for d, r in results.items()],
        next_cursor=next_cursor,
    )


async def test_route(request: web.Request) -> web.Response:
    """Send one `webhook_test` event to a URL now and answer with the attempt's outcome."""
    data = _object(body_of(request))
    if "url" not in data:
        raise _invalid("url: is required")
    url = _url(data["url"])
    deps = request.app[DEPS]
    outcome = await send_test(request.app[WEBHOOK_SESSION], deps.settings, url)
    return ok(**outcome)


def setup(app: web.Application) -> None:
    """Register the delivery routes."""
    app.router.add_post("/auth/webhook/deliveries", deliveries)
    app.router.add_post("/auth/webhook/redeliver", redeliver_route)
    app.router.add_post("/auth/webhook/test", test_route)

    async def session(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        app[WEBHOOK_SESSION] = make_session(settings.webhook_allowed_cidrs, limit=16)
        yield
        await app[WEBHOOK_SESSION].close()

    app.cleanup_ctx.append(session)
