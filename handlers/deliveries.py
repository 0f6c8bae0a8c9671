"""Webhook deliveries: listing and redelivery (`/auth/webhook/deliveries`, `/redeliver`).

The route table validates the bodies (`handlers.models`); this module calls the engine's read
side in `worker.webhooks.log`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from handlers.models import DeliveriesRequest, RedeliverRequest
from handlers.replies import ok
from handlers.state import DEPS, LOG_FIELDS
from worker.webhooks.log import list_deliveries, redeliver, room_deliveries_since


async def deliveries(request: web.Request, body: DeliveriesRequest) -> web.Response:
    """The delivery log, newest first, with each delivery's attempts; pages by `next_cursor`."""
    args: dict[str, Any] = {"limit": body.limit}
    for name in ("room_id", "state", "cursor"):
        if getattr(body, name) is not None:
            args[name] = getattr(body, name)
    if body.room_id is not None:
        request[LOG_FIELDS] = {"room_id": body.room_id}
    page = await list_deliveries(request.app[DEPS].redis, **args)
    return ok(deliveries=page.deliveries, next_cursor=page.next_cursor)


async def redeliver_route(request: web.Request, body: RedeliverRequest) -> web.Response:
    """Send finished deliveries again (same event, same `webhook-id`): by id, or a room's since."""
    deps = request.app[DEPS]
    if body.delivery_ids is not None:
        ids = body.delivery_ids
    else:
        assert body.room_id is not None
        assert body.since is not None
        request[LOG_FIELDS] = {"room_id": body.room_id}
        ids = await room_deliveries_since(deps.redis, body.room_id, body.since)
    queued = await redeliver(deps.redis, deps.outbox, ids)
    return ok(queued=len(queued), delivery_ids=queued)
