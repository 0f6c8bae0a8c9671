"""A backlog of one room's LiveKit events (several queued before a worker gets to them) is
applied in arrival order, each once, with the counts each forwarded event carries: the batch
path (`livekit_batch`) and the one-event path it hands over to, on a real stack."""

from __future__ import annotations

import time
from typing import Any

import pytest
from google.protobuf.json_format import MessageToJson
from livekit import api
from redis.asyncio import Redis
from redis.exceptions import ResponseError, WatchError

from tests.support.api import eventually, minimal_request
from tests.support.servers import Receiver
from tests.support.stack import Stack
from tests.test_livekit_webhook import post_webhook, token_for
from worker import keys
from worker.deps import Deps, open_deps
from worker.queue.schedule import Claim, now_ms
from worker.rooms import livekit_batch


def event(kind: str, room: dict, identity: str, n: int, sid: str | None = None) -> str:
    return MessageToJson(
        api.WebhookEvent(
            event=kind,
            id=f"EV_batch{n:08d}",
            created_at=int(time.time()),
            room=api.Room(sid=sid or room["sid"], name=room["name"]),
            participant=api.ParticipantInfo(sid=f"PA_{identity}", identity=identity, state=2),
        )
    )


async def held_room(
    stack: Stack, redis: Redis, receiver: Receiver, room_id: str
) -> tuple[dict[str, Any], Deps, Claim, int]:
    """A created room whose `in` queue is claimed, as a worker that took it would hold it, so
    the events posted next pile up: (its room_info, deps, the claim, the claim's due time)."""
    created = await stack.api.create(minimal_request(room_id, webhook_url=receiver.at("/hook")))
    await receiver.wait_for(lambda r: any(x.json["event"] == "room_started" for x in r))
    deps = await open_deps(stack.settings)
    far = now_ms() + 600_000
    async with redis.pipeline(transaction=True) as pipe:
        deps.inbound.add(pipe, room_id, far, replace=True)
        await pipe.execute()
    (claim,) = await deps.inbound.claim(1, far)
    return created["room_info"], deps, claim, far


async def test_a_backlog_of_a_rooms_events_is_applied_in_order_once_each(
    stack: Stack, redis: Redis, receiver: Receiver
) -> None:
    room, deps, claim, _ = await held_room(stack, redis, receiver, "backlog")
    try:
        bodies = [
            event("participant_joined", room, "alice", 1),
            event("participant_joined", room, "bob", 2),
            event("participant_joined", room, "alice", 3),  # a repeated join: not counted again
            event("participant_left", room, "alice", 4),
            event("participant_joined", room, "mallory", 5, sid="RM_notours"),  # one at a time
            event("participant_joined", room, "carol", 6),
            event("participant_left", room, "dave", 7),  # never counted in: not counted out
        ]
        for body in bodies:
            assert await post_webhook(stack.url, body, {"Authorization": token_for(body)}) == 200
        assert await redis.llen(keys.schedule_list(keys.INBOUND, "backlog")) == len(bodies)

        await livekit_batch.work(deps, claim)
    finally:
        await deps.aclose()

    assert await redis.llen(keys.schedule_list(keys.INBOUND, "backlog")) == 0
    assert await redis.zscore(keys.schedule_due(keys.INBOUND), "backlog") is None
    for n in range(1, len(bodies) + 1):
        assert await redis.exists(keys.lk_event_done(f"EV_batch{n:08d}")) == 1
    assert await redis.hget(keys.room("backlog"), "participants") == "2"
    assert await redis.hget(keys.room("backlog"), "joined") == "3"  # alice, bob, carol
    assert await redis.hget(keys.room("backlog"), "state") == "active"
    assert await redis.smembers(keys.members(room["sid"])) == {"bob", "carol"}
    wanted = ("participant_joined", "participant_left")
    await receiver.wait_for(lambda r: sum(x.json["event"] in wanted for x in r) >= 6)
    await eventually(lambda: _delivered(redis), what="every forwarded event delivered", timeout=10)
    seen = [
        (e["event"], e["participant"]["identity"], e["room"]["num_participants"])
        for e in receiver.events("/hook")
        if e["event"] in wanted
    ]
    assert seen == [
        ("participant_joined", "alice", 1),
        ("participant_joined", "bob", 2),
        ("participant_joined", "alice", 2),
        ("participant_left", "alice", 1),
        ("participant_joined", "carol", 2),
        ("participant_left", "dave", 2),
    ]


async def _delivered(redis: Redis) -> bool:
    return await redis.zcard(keys.schedule_due(keys.DELIVERY_QUEUES)) == 0


async def test_an_item_that_is_no_event_stops_the_batch_after_the_events_ahead_of_it(
    stack: Stack, redis: Redis, receiver: Receiver
) -> None:
    room, deps, claim, far = await held_room(stack, redis, receiver, "broken")
    try:
        for n, who in enumerate(("alice", "bob"), start=101):
            body = event("participant_joined", room, who, n)
            assert await post_webhook(stack.url, body, {"Authorization": token_for(body)}) == 200
        async with redis.pipeline(transaction=True) as pipe:
            deps.inbound.push(pipe, "broken", "z1:bm90IGRlZmxhdGVk", far)
            await pipe.execute()

        with pytest.raises(ValueError, match="not a LiveKit webhook event"):
            await livekit_batch.work(deps, claim)
    finally:
        await deps.aclose()

    assert await redis.lrange(keys.schedule_list(keys.INBOUND, "broken"), 0, -1) == [
        "z1:bm90IGRlZmxhdGVk"
    ]
    assert await redis.hget(keys.room("broken"), "participants") == "2"
    assert await redis.exists(keys.lk_event_done("EV_batch00000102")) == 1


async def test_watch_and_read_answers_the_reads_and_arms_the_watch(redis: Redis) -> None:
    await redis.hset("h", mapping={"a": "1"})
    await redis.set("s", "x")
    for changed in (False, True):
        async with redis.pipeline(transaction=True) as pipe:
            async with redis.pipeline(transaction=False) as reader:
                reader.hgetall("h")
                reader.mget(["s", "missing"])
                reader.sismember("nobody", "x")
                answers = await livekit_batch.watch_and_read(pipe, ["h", "s"], reader.command_stack)
            assert answers == [{"a": "1"}, ["x", None], 0]
            if changed:
                await redis.set("s", "y")  # another client, after the reads
            pipe.multi()
            pipe.hset("h", "a", "2")
            if changed:
                with pytest.raises(WatchError):
                    await pipe.execute()
            else:
                assert await pipe.execute() == [0]
        assert await redis.hget("h", "a") == ("1" if changed else "2")
        await redis.hset("h", "a", "1")
        await redis.set("s", "x")


async def test_watch_and_read_reads_every_reply_when_one_fails(redis: Redis) -> None:
    await redis.set("a-string", "x")
    async with (
        redis.pipeline(transaction=True) as pipe,
        redis.pipeline(transaction=False) as reader,
    ):
        reader.hgetall("a-string")  # WRONGTYPE
        reader.get("a-string")
        with pytest.raises(ResponseError):
            await livekit_batch.watch_and_read(pipe, ["a-string"], reader.command_stack)
    assert await redis.get("a-string") == "x"  # the pooled connection is still in step
    assert await redis.ping()
