"""The batches of rooms one worker applies at once share one WATCH/read and one transaction
(`livekit_batch.Group`), each room still getting exactly its own changes and forwarded events;
one room's failure stays its own; a room held twice (a claim taken over) is never applied twice
in one transaction. On a real stack, with a real Redis counting the transactions."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from tests.support.api import eventually, minimal_request
from tests.support.servers import Receiver
from tests.support.stack import Stack
from tests.test_inbound_batch import event
from tests.test_livekit_webhook import post_webhook, token_for
from worker import keys
from worker.deps import Deps, open_deps
from worker.queue.schedule import Claim, now_ms
from worker.rooms import livekit_batch


async def held_rooms(
    stack: Stack, receiver: Receiver, names: list[str]
) -> tuple[dict[str, dict[str, Any]], Deps, dict[str, Claim]]:
    """Created rooms whose `in` queues one process holds claimed (so posted events pile up):
    their room_info by name, that process's deps, its claims by name."""
    infos = {}
    for name in names:
        created = await stack.api.create(minimal_request(name, webhook_url=receiver.at("/hook")))
        infos[name] = created["room_info"]
    started = len(names)
    await receiver.wait_for(lambda r: sum(x.json["event"] == "room_started" for x in r) >= started)
    deps = await open_deps(stack.settings)
    far = now_ms() + 600_000
    async with deps.redis.pipeline(transaction=True) as pipe:
        for name in names:
            deps.inbound.add(pipe, name, far, replace=True)
        await pipe.execute()
    claims = {c.member: c for c in await deps.inbound.claim(len(names), far)}
    assert set(claims) == set(names)
    return infos, deps, claims


async def post(stack: Stack, body: str) -> None:
    assert await post_webhook(stack.url, body, {"Authorization": token_for(body)}) == 200


async def execs(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_exec", {}).get("calls", 0))


async def test_rooms_worked_at_once_share_a_transaction_each_with_its_own_changes(
    stack: Stack, redis: Redis, receiver: Receiver
) -> None:
    names = ["g-a", "g-b", "g-c"]
    infos, deps, claims = await held_rooms(stack, receiver, names)
    try:
        n = 0
        for name in names:
            for who in ("alice", "bob", "alice"):  # alice's second join is not counted again
                n += 1
                await post(stack, event("participant_joined", infos[name], f"{name}-{who}", n))
        await post(stack, event("participant_left", infos["g-b"], "g-b-bob", 100))
        await eventually(
            lambda: _settled(redis), what="the rooms' earlier deliveries done", timeout=10
        )
        before = await execs(redis)
        await asyncio.gather(*(livekit_batch.work(deps, claims[name]) for name in names))
        transactions = await execs(redis) - before
    finally:
        await deps.aclose()

    # The first room's batch goes at once; the two made while it was out go together.
    assert transactions < len(names)
    expected = {"g-a": "2", "g-b": "1", "g-c": "2"}
    for name in names:
        assert await redis.llen(keys.schedule_list(keys.INBOUND, name)) == 0
        assert await redis.hget(keys.room(name), "participants") == expected[name]
        assert await redis.hget(keys.room(name), "joined") == "2"
    await receiver.wait_for(
        lambda r: (
            sum(x.json["event"] in ("participant_joined", "participant_left") for x in r) >= 10
        )
    )
    for name in names:
        seen = [
            (e["event"], e["participant"]["identity"], e["room"]["num_participants"])
            for e in receiver.events("/hook")
            if e["event"].startswith("participant_") and e["room"]["room_id"] == name
        ]
        want = [
            ("participant_joined", f"{name}-alice", 1),
            ("participant_joined", f"{name}-bob", 2),
            ("participant_joined", f"{name}-alice", 2),
        ]
        if name == "g-b":
            want.append(("participant_left", "g-b-bob", 1))
        assert seen == want


async def _settled(redis: Redis) -> bool:
    return await redis.zcard(keys.schedule_due(keys.DELIVERY_QUEUES)) == 0


async def test_one_rooms_failure_in_a_group_is_its_own(
    stack: Stack, redis: Redis, receiver: Receiver
) -> None:
    names = ["f-a", "f-b", "f-c"]
    infos, deps, claims = await held_rooms(stack, receiver, names)
    try:
        for n, name in enumerate(names, start=1):
            await post(stack, event("participant_joined", infos[name], f"{name}-alice", n))
        # f-b's set of who is in is not a set: reading it fails, for f-b alone.
        await redis.set(keys.members(infos["f-b"]["sid"]), "not a set")
        results = await asyncio.gather(
            *(livekit_batch.work(deps, claims[name]) for name in names), return_exceptions=True
        )
    finally:
        await deps.aclose()

    assert results[0] is None and results[2] is None
    assert isinstance(results[1], ResponseError)
    assert await redis.hget(keys.room("f-a"), "participants") == "1"
    assert await redis.hget(keys.room("f-c"), "participants") == "1"
    assert await redis.hget(keys.room("f-b"), "participants") == "0"
    assert await redis.llen(keys.schedule_list(keys.INBOUND, "f-b")) == 1  # still queued


async def test_a_room_held_twice_at_once_has_its_events_applied_once(
    stack: Stack, redis: Redis, receiver: Receiver
) -> None:
    names = ["t-a", "t-b", "t-c"]
    infos, deps, claims = await held_rooms(stack, receiver, names)
    try:
        for n, who in enumerate(("alice", "bob"), start=1):
            await post(stack, event("participant_joined", infos["t-a"], who, n))
        await post(stack, event("participant_joined", infos["t-b"], "carol", 3))
        # t-a's lease is taken over (as when it ran out): a second claim of it, a new token.
        far = now_ms() + 600_000
        await redis.hdel(keys.schedule_leases(keys.INBOUND), "t-a")
        await redis.zadd(keys.schedule_due(keys.INBOUND), {"t-a": far})
        (again,) = await deps.inbound.claim(1, far)
        assert again.member == "t-a" and again.token != claims["t-a"].token
        await asyncio.gather(
            livekit_batch.work(deps, claims["t-b"]),  # goes alone, the others gather behind
            livekit_batch.work(deps, claims["t-a"]),
            livekit_batch.work(deps, again),
        )
    finally:
        await deps.aclose()

    assert await redis.hget(keys.room("t-a"), "participants") == "2"
    assert await redis.hget(keys.room("t-a"), "joined") == "2"
    assert await redis.llen(keys.schedule_list(keys.INBOUND, "t-a")) == 0
