"""`/auth/room/create` end to end: API → arq → emulator → signed `room_created`."""

from __future__ import annotations

import asyncio
import json
import uuid

from livekit import api
from standardwebhooks import Webhook

from tests.support.api import API_KEY, API_SECRET, WEBHOOK_SECRET, eventually, seed_request
from tests.support.servers import Receiver, free_port
from tests.support.stack import Stack, make_settings, run_stack
from worker import keys


def created_events(receiver: Receiver, room_id: str) -> list[dict]:
    return [
        e
        for e in receiver.events("/hook")
        if e["event"] == "room_created" and e["room"]["room_id"] == room_id
    ]


async def rooms_in_livekit(stack: Stack) -> dict[str, dict]:
    return {r["name"]: r for r in (await stack.lk("rooms"))["rooms"]}


async def creates_seen(stack: Stack) -> int:
    return len((await stack.lk("calls?method=CreateRoom"))["calls"])


async def test_seed_example_creates_the_room_and_a_signed_room_created_arrives(
    stack: Stack, receiver: Receiver
) -> None:
    body = await stack.api.create(seed_request("room01", webhook_url=receiver.at("/hook")))

    assert body["status"] is True and body["msg"] == "success"
    assert body["status_code"] == "SUCCESS"
    info = body["room_info"]
    assert body["roomInfo"] == info
    assert info["name"] == "room01" and info["sid"].startswith("RM_")
    assert isinstance(info["creation_time"], int)
    assert info["empty_timeout"] == 1800  # 0/absent = the configured default
    assert {"mime", "fmtp_line"} <= set(info["enabled_codecs"][0])
    metadata = json.loads(info["metadata"])
    assert metadata["room_title"] == "Test room"
    assert metadata["room_features"]["breakout_room_features"]["allowed_number_rooms"] == 2
    livekit_room = (await rooms_in_livekit(stack))["room01"]
    assert livekit_room["sid"] == info["sid"]
    assert livekit_room["metadata"] == info["metadata"]  # the same string LiveKit holds

    await receiver.wait_for(lambda r: len(created_events(receiver, "room01")) == 1)
    hit = next(r for r in receiver.received if r.json["event"] == "room_created")
    event = hit.json
    assert event["room"]["sid"] == info["sid"]
    assert event["room"]["creation_time"] == str(info["creation_time"])  # int64 as string
    assert event["created_at"].isdigit()
    # Both signatures verify with the receivers' reference libraries.
    assert hit.headers["Authorization"] == hit.headers["Hash-Token"]
    api.WebhookReceiver(api.TokenVerifier(API_KEY, API_SECRET)).receive(
        hit.body.decode(), hit.headers["Authorization"]
    )
    Webhook(WEBHOOK_SECRET).verify(hit.body, hit.headers)
    assert hit.headers["webhook-id"] == event["id"]
    # The event id the claim made: a version 4 UUID in its canonical spelling.
    event_id = uuid.UUID(event["id"])
    assert (str(event_id), event_id.version, event_id.variant) == (event["id"], 4, uuid.RFC_4122)
    assert hit.headers["User-Agent"].startswith("roomkeeper/")


async def test_respond_async_answers_202_with_a_job_id_and_the_room_follows(
    stack: Stack,
) -> None:
    body = await stack.api.create(seed_request("async-room"), asynchronous=True)

    assert body == {
        "status": True,
        "msg": "queued",
        "status_code": "SUCCESS",
        "job_id": body["job_id"],
        "warnings": [],
    }
    # A version 4 UUID in 32 hex digits, as job ids have always been written.
    job_id = uuid.UUID(hex=body["job_id"])
    assert (job_id.hex, job_id.version, job_id.variant) == (body["job_id"], 4, uuid.RFC_4122)
    await eventually(lambda: _has_room(stack, "async-room"), what="room in LiveKit")


async def _has_room(stack: Stack, name: str) -> bool:
    return name in await rooms_in_livekit(stack)


async def test_concurrent_creates_after_redis_lost_its_scripts_each_get_their_own_job(
    stack: Stack, redis
) -> None:
    # The API sends its claim script by SHA alone; a Redis that restarted or flushed its
    # scripts answers NOSCRIPT, and the claims must still go through, each with its own answer
    # (concurrent creates share one pipeline to Redis).
    await redis.script_flush()
    names = [f"flushed-{i}" for i in range(12)]

    answers = await asyncio.gather(
        *(stack.api.create(seed_request(name), asynchronous=True) for name in names)
    )

    assert [a["msg"] for a in answers] == ["queued"] * len(names), answers
    job_ids = [a["job_id"] for a in answers]
    assert len(set(job_ids)) == len(names)
    for name, job_id in zip(names, job_ids, strict=True):
        assert await redis.hget(keys.job(job_id), "room_id") == name
    for name in names:
        await eventually(lambda n=name: _has_room(stack, n), what=f"{name} in LiveKit")


async def test_twenty_concurrent_creates_give_one_livekit_room_and_one_event(
    stack: Stack, receiver: Receiver
) -> None:
    request = seed_request("busy-room", webhook_url=receiver.at("/hook"))

    answers = await asyncio.gather(*(stack.api.create(request) for _ in range(20)))

    assert all(a["status"] for a in answers), answers
    assert len({a["room_info"]["sid"] for a in answers}) == 1
    assert sorted(a["msg"] for a in answers).count("success") == 1
    assert await creates_seen(stack) == 1
    await receiver.wait_for(lambda r: len(created_events(receiver, "busy-room")) >= 1)
    # Give a duplicate every chance to show up: wait until the delivery queue is drained.
    await eventually(lambda: _queue_empty(stack), what="delivery queue drained")
    assert len(created_events(receiver, "busy-room")) == 1


async def _queue_empty(stack: Stack) -> bool:
    from redis.asyncio import Redis

    client = Redis.from_url(stack.settings.redis_url)
    try:
        return await client.zcard(keys.schedule_due(keys.DELIVERY_QUEUES)) == 0
    finally:
        await client.aclose()


async def test_creating_an_active_room_again_returns_it_and_calls_nothing(
    stack: Stack, receiver: Receiver
) -> None:
    first = await stack.api.create(seed_request("again", webhook_url=receiver.at("/hook")))
    await receiver.wait_for(lambda r: len(created_events(receiver, "again")) == 1)

    second = await stack.api.create(seed_request("again", webhook_url=receiver.at("/hook")))

    assert second["status"] is True
    assert second["msg"] == "room already exists"
    assert second["room_info"] == first["room_info"]
    assert await creates_seen(stack) == 1
    await eventually(lambda: _queue_empty(stack), what="delivery queue drained")
    assert len(created_events(receiver, "again")) == 1


async def test_livekit_answering_503_is_retried_and_the_room_created_once(
    stack: Stack,
) -> None:
    await stack.lk("faults", "POST", {"method": "CreateRoom", "count": 2, "code": "unavailable"})

    body = await stack.api.create(seed_request("flaky"))

    assert body["status"] is True, body
    assert "flaky" in await rooms_in_livekit(stack)
    calls = (await stack.lk("calls?method=CreateRoom"))["calls"]
    assert [c["status"] for c in calls] == [503, 503, 200]


async def test_livekit_slower_than_the_timeout_is_retried(redis_server, emulator, redis) -> None:
    settings = make_settings(redis_server.url, emulator.url, livekit_timeout=0.5)
    async with run_stack(settings, emulator) as stack:
        await stack.lk("faults", "POST", {"method": "CreateRoom", "count": 1, "latency_ms": 2000})

        body = await stack.api.create(seed_request("slow"))

        assert body["status"] is True, body
        calls = (await stack.lk("calls?method=CreateRoom"))["calls"]
        assert len(calls) == 2  # the slow one timed out, the retry went through
        assert len({r["sid"] for r in (await stack.lk("rooms"))["rooms"]}) == 1


async def test_livekit_down_gives_a_clear_failure_after_the_retries(
    redis_server, emulator, redis
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(redis_server.url, nowhere)
    async with run_stack(settings, emulator) as stack:
        status, body = await stack.api.post("/auth/room/create", seed_request("down"))

    assert status == 200
    assert body == {
        "status": False,
        "msg": "can't create room: livekit unavailable",
        "status_code": "INTERNAL_SERVER_ERROR",
    }


async def test_livekit_rejecting_the_room_is_not_retried_and_says_why(stack: Stack) -> None:
    await stack.lk(
        "faults",
        "POST",
        {"method": "CreateRoom", "count": 1, "code": "invalid_argument", "msg": "bad name"},
    )

    status, body = await stack.api.post("/auth/room/create", seed_request("rejected"))

    assert status == 200 and body["status"] is False
    assert body["status_code"] == "INTERNAL_SERVER_ERROR"
    assert "livekit rejected it" in body["msg"] and "bad name" in body["msg"]
    assert await creates_seen(stack) == 1


async def test_a_long_outage_answers_202_and_the_room_is_created_when_livekit_recovers(
    redis_server, emulator, redis
) -> None:
    settings = make_settings(
        redis_server.url,
        emulator.url,
        create_wait=0.5,
        create_retry_schedule=",".join(["0.3"] * 20),
    )
    async with run_stack(settings, emulator) as stack:
        await stack.lk("faults", "POST", {"method": "CreateRoom", "count": -1})

        status, body = await stack.api.post("/auth/room/create", seed_request("outage"))

        assert status == 202 and body["status"] is True and body["msg"] == "queued"
        assert "livekit" in body["retrying"]
        await stack.lk("faults", "DELETE")
        await eventually(lambda: _has_room(stack, "outage"), what="room created after recovery")
        status, again = await stack.api.post("/auth/room/create", seed_request("outage"))
        assert again["msg"] == "room already exists"
