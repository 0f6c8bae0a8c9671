"""A delivery recorded by a version before the compact records (a body key of raw JSON, an attempt
list, an index entry per URL) is still listed, redelivered with its exact bytes, and pruned."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from redis.asyncio import Redis

from tests.support.api import eventually
from tests.support.delivery import room_object
from tests.support.servers import Receiver
from tests.support.stack import Stack
from worker import keys
from worker.webhooks.attempt import make_session
from worker.webhooks.bodies import notify_body
from worker.webhooks.delivery import queue_id, url_hash
from worker.webhooks.engine import Dispatcher, new_delivery_id


async def an_old_delivered_record(redis: Redis, room_id: str, url: str) -> tuple[str, bytes]:
    """A delivered event as the earlier version left it in Redis."""
    event_id = str(uuid.uuid4())
    body = notify_body("room_created", room_object(room_id), event_id=event_id)
    did = new_delivery_id()
    now = time.time()
    await redis.set(keys.event_body(event_id), body, ex=3600)
    record = {
        "event_id": event_id,
        "event": "room_created",
        "room_id": room_id,
        "url": url,
        "queue": queue_id(room_id, url),
        "state": "delivered",
        "attempts": 1,
        "created": f"{now - 5:.6f}",
        "finished": f"{now - 4:.6f}",
    }
    await redis.hset(keys.delivery(did), mapping=record)
    attempt = {"at": round(now - 4, 3), "duration_ms": 3.2, "response": "ok", "status": 200}
    await redis.rpush(keys.delivery_attempts(did), json.dumps(attempt))
    for index in (
        keys.DELIVERIES,
        keys.deliveries_by_room(room_id),
        keys.deliveries_by_url(url_hash(url)),
    ):
        await redis.zadd(index, {did: 0})
    await redis.hincrby(keys.DELIVERY_COUNTS, "delivered", 1)
    return did, body


async def attempts_of(stack: Stack, room_id: str) -> list[dict[str, Any]]:
    status, body = await stack.api.post("/auth/webhook/deliveries", {"room_id": room_id})
    assert status == 200 and body["status"] is True, body
    (delivery,) = body["deliveries"]
    assert delivery["state"] == "delivered"
    return list(delivery["attempts"])


async def test_an_old_record_is_listed_redelivered_with_its_bytes_and_pruned(
    stack: Stack, receiver: Receiver, redis: Redis
) -> None:
    url = receiver.at("/old")
    did, body = await an_old_delivered_record(redis, "old-room", url)
    (old,) = await attempts_of(stack, "old-room")
    assert (old["status"], old["response"]) == (200, "ok")

    status, answer = await stack.api.post(
        "/auth/webhook/redeliver", {"room_id": "old-room", "since": 0}
    )
    assert status == 200 and answer["results"] == [{"delivery_id": did, "result": "queued"}]
    await eventually(lambda: [r for r in receiver.received if r.path == "/old"], what="resent")
    assert [r.body for r in receiver.received if r.path == "/old"] == [body]  # byte for byte
    attempts = await eventually(
        lambda: _two(attempts_of(stack, "old-room")), what="the redelivery logged"
    )
    assert attempts[0] == old and attempts[1]["status"] == 200

    async with make_session() as session:
        assert await Dispatcher(redis, stack.settings, session).prune(time.time() + 1) == 1
    assert not await redis.exists(keys.delivery(did), keys.delivery_attempts(did))
    assert await redis.zscore(keys.deliveries_by_url(url_hash(url)), did) is None


async def _two(listing: Any) -> list[dict[str, Any]] | None:
    attempts: list[dict[str, Any]] = await listing
    return attempts if len(attempts) == 2 else None
