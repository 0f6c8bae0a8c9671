"""Webhook deliveries: listing and redelivery (`/auth/webhook/deliveries`, `/redeliver`).

Both routes sit behind the `/auth/*` middleware (signature, JSON, error mapping); this module
only validates fields, naming each one in its message, and calls the engine in
`worker.webhooks.engine`.
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from handlers.replies import ApiError, ok
from handlers.state import DEPS, LOG_FIELDS, body_of
from worker.webhooks.engine import ID_PATTERN, STATES
from worker.webhooks.log import list_deliveries, redeliver, room_deliveries_since

INVALID = "INVALID_PARAMETERS"
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_REDELIVER = 1000


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


def parse_redeliver(body: Any) -> list[str] | tuple[str, float]:
    """`{delivery_ids}` or `{room_id, since}`, checked: the ids, or (room_id, since)."""
    data = _object(body)
    if "delivery_ids" in data:
        if "room_id" in data or "since" in data:
            raise _invalid("give either delivery_ids, or room_id with since, not both")
        ids = data["delivery_ids"]
        if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_REDELIVER:
            raise _invalid(f"delivery_ids: must be a list of 1 to {MAX_REDELIVER} delivery ids")
        return [_delivery_id(v, f"delivery_ids[{i}]") for i, v in enumerate(ids)]
    if "room_id" not in data:
        raise _invalid("delivery_ids or room_id (with since) is required")
    room_id = _room_id(data["room_id"])
    if "since" not in data:
        raise _invalid("since: required with room_id (unix seconds)")
    since = data["since"]
    if (
        isinstance(since, bool)
        or not isinstance(since, int | float)
        or not math.isfinite(since)
        or since < 0
    ):
        raise _invalid("since: must be unix seconds (a number >= 0)")
    return room_id, float(since)


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
    if isinstance(target, tuple):
        room_id, since = target
        request[LOG_FIELDS] = {"room_id": room_id}
        ids = await room_deliveries_since(deps.redis, room_id, since)
    else:
        ids = target
    queued = await redeliver(deps.redis, deps.outbox, ids)
    return ok(queued=len(queued), delivery_ids=queued)


def setup(app: web.Application) -> None:
    """Register the delivery routes."""
    app.router.add_post("/auth/webhook/deliveries", deliveries)
    app.router.add_post("/auth/webhook/redeliver", redeliver_route)
