"""A delivery recorded by a version before the compact records (a body key of raw JSON, an attempt
list, an index entry per URL), or by one before URLs were kept once (`url`, `created` and
`finished` in the record), is still listed, redelivered with its exact bytes, and pruned; a
record of today's layout names its URL by hash and derives its times, and stays compact."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from redis.asyncio import Redis

from tests.support.api import eventually
from tests.support.delivery import emit, room_object, settled
from tests.support.servers import Receiver
from tests.support.stack import Stack
from worker import keys
from worker.webhooks.bodies import notify_body
from worker.webhooks.delivery import body_fields, queue_id, url_hash
from worker.webhooks.engine import Dispatcher, new_delivery_id
from worker.webhooks.http1 import Pool
from worker.webhooks.stored import pack_body


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

    async with Pool() as pool:
        assert await Dispatcher(redis, stack.settings, pool).prune(time.time() + 1) == 1
    assert not await redis.exists(keys.delivery(did), keys.delivery_attempts(did))
    assert await redis.zscore(keys.deliveries_by_url(url_hash(url)), did) is None


async def _two(listing: Any) -> list[dict[str, Any]] | None:
    attempts: list[dict[str, Any]] = await listing
    return attempts if len(attempts) == 2 else None


async def a_record_with_its_url_in_it(redis: Redis, room_id: str, url: str) -> tuple[str, bytes]:
    """A delivered event as the version before URLs were kept once left it: its packed body in
    its record, its attempt log a field, its URL and times as fields."""
    event_id = str(uuid.uuid4())
    body = notify_body("room_created", room_object(room_id), event_id=event_id)
    did = new_delivery_id()
    now = time.time()
    record = {
        "event_id": event_id,
        "event": "room_created",
        "room_id": room_id,
        "url": url,
        "state": "delivered",
        "created": f"{now - 5:.6f}",
        "finished": f"{now - 4:.6f}",
        "log": f'[{round(now - 4, 3)},3.2,200,"ok"]',
    } | body_fields(pack_body(body))
    await redis.hset(keys.delivery(did), mapping=record)
    for index in (keys.DELIVERIES, keys.deliveries_by_room(room_id)):
        await redis.zadd(index, {did: 0})
    await redis.hincrby(keys.DELIVERY_COUNTS, "delivered", 1)
    return did, body


async def listed(stack: Stack, room_id: str) -> dict[str, Any]:
    status, body = await stack.api.post("/auth/webhook/deliveries", {"room_id": room_id})
    assert status == 200 and body["status"] is True, body
    (delivery,) = body["deliveries"]
    return dict(delivery)


async def test_a_record_with_its_url_in_it_is_listed_redelivered_and_pruned(
    stack: Stack, receiver: Receiver, redis: Redis
) -> None:
    url = receiver.at("/with-url")
    did, body = await a_record_with_its_url_in_it(redis, "url-room", url)
    written = await redis.hgetall(keys.delivery(did))
    before = await listed(stack, "url-room")
    assert before["url"] == url
    assert before["created_at"] == float(written["created"])
    assert before["finished_at"] == float(written["finished"])
    assert [(a["status"], a["response"]) for a in before["attempts"]] == [(200, "ok")]

    status, answer = await stack.api.post(
        "/auth/webhook/redeliver", {"room_id": "url-room", "since": 0}
    )
    assert status == 200 and answer["results"] == [{"delivery_id": did, "result": "queued"}]
    await eventually(lambda: [r for r in receiver.received if r.path == "/with-url"], what="resent")
    assert [r.body for r in receiver.received if r.path == "/with-url"] == [body]
    await eventually(lambda: settled(redis, [did]), what="the redelivery settled")
    after = await listed(stack, "url-room")
    assert after["state"] == "delivered" and after["url"] == url
    assert after["created_at"] == before["created_at"]
    assert after["finished_at"] > before["finished_at"]
    assert len(after["attempts"]) == 2

    async with Pool() as pool:
        assert await Dispatcher(redis, stack.settings, pool).prune(time.time() + 1) == 1
    assert not await redis.exists(keys.delivery(did))
    assert await redis.zscore(keys.DELIVERIES, did) is None


async def test_a_record_names_its_url_by_hash_derives_its_times_and_stays_compact(
    stack: Stack, receiver: Receiver, redis: Redis
) -> None:
    # Longer than the 64 bytes a value of a compact hash may have.
    path = "/" + "long-path/" * 8
    url = receiver.at(path)
    assert len(url) > 64
    emitted_from = time.time()
    ((_, (did,)),) = await emit(redis, stack.settings, "hash-room", url)
    await eventually(lambda: settled(redis, [did]), what="delivered")
    stored = await redis.hgetall(keys.delivery(did))
    assert stored["uh"] == url_hash(url)
    assert not {"url", "created", "finished", "queue", "attempts"} & set(stored)
    assert await redis.object("encoding", keys.delivery(did)) == "listpack"
    assert await redis.get(keys.webhook_url(url_hash(url))) == url

    shown = await listed(stack, "hash-room")
    assert shown["url"] == url and shown["state"] == "delivered"
    assert emitted_from - 0.001 <= shown["created_at"] <= time.time()
    assert shown["created_at"] <= shown["finished_at"] <= time.time() + 0.001
    assert shown["finished_at"] >= shown["attempts"][0]["at"]

    # Redelivered (a URL's replay matches it by the URL it names), then pruned.
    status, answer = await stack.api.post(
        "/auth/webhook/redeliver", {"url": url, "since": 0, "state": "all"}
    )
    assert status == 200 and answer["results"] == [{"delivery_id": did, "result": "queued"}], answer
    await eventually(
        lambda: len([r for r in receiver.received if r.path == path]) == 2, what="resent"
    )
    await eventually(lambda: settled(redis, [did]), what="the redelivery settled")
    assert len((await listed(stack, "hash-room"))["attempts"]) == 2
    async with Pool() as pool:
        assert await Dispatcher(redis, stack.settings, pool).prune(time.time() + 1) == 1
    assert not await redis.exists(keys.delivery(did))
