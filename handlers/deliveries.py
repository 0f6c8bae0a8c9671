"""Webhook deliveries: listing and redelivery (`/auth/webhook/deliveries`, `/redeliver`).

The route table validates the bodies (`handlers.models`); this module calls the engine's read
side in `worker.webhooks.log`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from handlers.models import DeliveriesRequest, RedeliverRequest, TestSendRequest
from handlers.replies import ok
from handlers.state import DEPS, LOG_FIELDS, SETTINGS, WEBHOOK_POOL
from worker.webhooks.http1 import Pool
from worker.webhooks.log import (
    QUEUED,
    list_deliveries,
    redeliver,
    replay_url,
    room_deliveries_since,
)
from worker.webhooks.testsend import send_test


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
    next_cursor = None
    if body.url is not None:
        assert body.since is not None
        done = await replay_url(
            deps.redis,
            deps.outbox,
            body.url,
            since=body.since,
            until=body.until,
            state=body.state,
            cursor=body.cursor,
        )
        results, next_cursor = done.results, done.next_cursor
    elif body.delivery_ids is not None:
        results = await redeliver(deps.redis, deps.outbox, body.delivery_ids)
    else:
        assert body.room_id is not None
        assert body.since is not None
        request[LOG_FIELDS] = {"room_id": body.room_id}
        ids = await room_deliveries_since(deps.redis, body.room_id, body.since)
        results = await redeliver(deps.redis, deps.outbox, ids, delivered_too=True)
    queued = [d for d, r in results.items() if r == QUEUED]
    return ok(
        queued=len(queued),
        delivery_ids=queued,
        results=[{"delivery_id": d, "result": r} for d, r in results.items()],
        next_cursor=next_cursor,
    )


async def test_send(request: web.Request, body: TestSendRequest) -> web.Response:
    """Send one `webhook_test` event to a URL now and answer with the attempt's outcome."""
    outcome = await send_test(request.app[WEBHOOK_POOL], request.app[SETTINGS], body.url)
    return ok(**outcome)


def setup(app: web.Application) -> None:
    """The guarded connection pool test sends use, for the app's lifetime."""

    async def pool(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        app[WEBHOOK_POOL] = Pool(settings.webhook_allowed_cidrs, limit=16)
        yield
        await app[WEBHOOK_POOL].close()

    app.cleanup_ctx.append(pool)
