"""The fault suite: processes killed, Redis restarted, LiveKit and receivers away. Nothing lost.

Each test prints one `fault:` line with what it injected and what it counted (accepted vs
delivered); the README's Reliability table quotes them (`pytest tests/test_faults.py -s`).
"""

from __future__ import annotations

import signal
import time
from collections import defaultdict
from typing import Any

import pytest
from redis.asyncio import Redis

from emulator.server import Emulator
from tests.support.api import LK_KEY, LK_SECRET, Api, eventually, livekit_rooms, minimal_request
from tests.support.procs import roomkeeper_env, worker_process
from tests.support.servers import Receiver, RedisServer, free_port, run_receiver
from tests.support.stack import make_settings, run_api, run_stack
from worker import keys

pytestmark = pytest.mark.slow  # real processes or injected faults


def bulk(prefix: str, n: int, webhook_url: str) -> dict[str, Any]:
    return {"rooms": [minimal_request(f"{prefix}-{i}", webhook_url=webhook_url) for i in range(n)]}


async def submit(api: Api, request: dict[str, Any]) -> list[str]:
    status, body = await api.post("/auth/room/createBulk", request)
    assert status == 202, body
    assert all(r["accepted"] for r in body["results"]), body
    return [r["job_id"] for r in body["results"]]


async def job_states(redis: Redis, job_ids: list[str]) -> list[str | None]:
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(keys.job(job_id), "state")
        return list(await pipe.execute())


async def all_complete(redis: Redis, job_ids: list[str]) -> bool:
    return all(s == "complete" for s in await job_states(redis, job_ids))


def created_by_room(receiver: Receiver) -> dict[str, list[Any]]:
    seen: dict[str, list[Any]] = defaultdict(list)
    for hit in receiver.received:
        event = hit.json
        if event["event"] == "room_created":
            seen[event["room"]["room_id"]].append((hit.headers["webhook-id"], event["room"]["sid"]))
    return seen


async def test_a_worker_killed_again_and_again_during_a_bulk_loses_and_doubles_nothing(
    redis_server: RedisServer, redis: Redis, receiver: Receiver
) -> None:
    n, kills = 1000, 4
    async with Emulator(LK_KEY, LK_SECRET, tick_interval=3600) as emu:
        env = roomkeeper_env(redis_server.url, emu.url, ROOMKEEPER_JOB_TIMEOUT="5")
        settings = make_settings(redis_server.url, emu.url)
        async with run_api(settings) as url:
            api = Api(url)
            jobs = await submit(api, bulk("k", n, receiver.at("/hook")))
            recoveries = []
            for i in range(kills):
                async with worker_process(env, f"victim-{i}") as victim:
                    before = (await job_states(redis, jobs)).count("complete")
                    started = time.monotonic()
                    # Recovery: from a fresh worker's start to the next room created.
                    await eventually(
                        lambda b=before: _progress(redis, jobs, b), timeout=40, what="progress"
                    )
                    recoveries.append(time.monotonic() - started)
                    victim.signal(signal.SIGKILL)
                    victim.wait(10)
            async with worker_process(env, "survivor"):
                await eventually(lambda: all_complete(redis, jobs), timeout=90, what="all created")
                await receiver.wait_for(lambda r: len(created_by_room(receiver)) == n, timeout=60)
            await api.close()
        rooms = await livekit_rooms(emu.url)

    created = created_by_room(receiver)
    assert len(rooms) == n
    for room_id, deliveries in created.items():
        # Delivered at least once; a repeat is the same event (same webhook-id, same sid).
        assert len({d for d in deliveries}) == 1, (room_id, deliveries)
        assert deliveries[0][1] == rooms[room_id]["sid"]
    duplicates = sum(len(d) - 1 for d in created.values())
    print(
        f"\nfault: worker SIGKILLed {kills}x during a {n}-room bulk: {len(rooms)} rooms in LiveKit, "
        f"{len(created)}/{n} room_created received ({duplicates} repeats, same webhook-id), "
        f"recovery after restart max {max(recoveries):.1f} s"
    )


async def _progress(redis: Redis, jobs: list[str], before: int) -> bool:
    return (await job_states(redis, jobs)).count("complete") > before


async def test_redis_restarted_mid_bulk_with_aof_loses_nothing_accepted(
    emulator: Emulator, receiver: Receiver
) -> None:
    n = 500
    server = RedisServer(appendonly=True)
    server.start()
    try:
        settings = make_settings(server.url, emulator.url)
        async with run_stack(settings, emulator) as stack:
            jobs = await submit(stack.api, bulk("r", n, receiver.at("/hook")))
            redis = Redis.from_url(server.url, decode_responses=True)
            await eventually(lambda: _some(redis, jobs), what="bulk under way")
            await redis.aclose()
            server.stop(signal.SIGKILL)  # a crash, not a clean shutdown
            server.start()
            redis = Redis.from_url(server.url, decode_responses=True)
            await eventually(lambda: all_complete(redis, jobs), timeout=90, what="all created")
            await receiver.wait_for(lambda r: len(created_by_room(receiver)) == n, timeout=60)
            await redis.aclose()
        rooms = await livekit_rooms(emulator.url)
    finally:
        server.cleanup()

    assert len(rooms) == n
    print(
        f"\nfault: redis-server SIGKILLed and restarted (AOF, fsync always) mid-bulk: "
        f"{n} accepted, {len(rooms)} created, {len(created_by_room(receiver))} room_created received"
    )


async def _some(redis: Redis, jobs: list[str]) -> bool:
    return (await job_states(redis, jobs)).count("complete") >= 20


async def test_a_receiver_down_for_a_while_gets_every_event_in_order_per_room(
    redis_server: RedisServer, redis: Redis, emulator: Emulator
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    settings = make_settings(
        redis_server.url, emulator.url, webhook_retry_schedule=",".join(["0"] + ["0.3"] * 40)
    )
    rooms = [f"down-{i}" for i in range(5)]
    async with run_stack(settings, emulator) as stack:
        for room in rooms:
            await stack.api.create(minimal_request(room, webhook_url=url))
        for step in range(4):  # each room: joined/left x4, while nobody listens
            for room in rooms:
                await stack.lk(f"rooms/{room}/participants", "POST", {"identity": f"p{step}"})
                await stack.lk(f"rooms/{room}/participants/p{step}", "DELETE")
        await eventually(lambda: _all_attempted(redis, rooms), what="events queued and failing")
        receiver = Receiver()
        async with run_receiver(receiver, port):  # back, on the same address
            expected = 1 + 1 + 8  # room_created, room_started, 4 x (joined, left)
            await receiver.wait_for(
                lambda r: all(len(_events(receiver, room)) == expected for room in rooms),
                timeout=60,
            )

    for room in rooms:
        events = _events(receiver, room)
        assert events[:2] == [("room_created", ""), ("room_started", "")]
        assert events[2:] == [
            (kind, f"p{step}")
            for step in range(4)
            for kind in ("participant_joined", "participant_left")
        ]
    print(
        f"\nfault: receiver down while {len(rooms) * expected} events were emitted: "
        f"{len(receiver.received)} delivered after it came back, in order per room"
    )


def _events(receiver: Receiver, room: str) -> list[tuple[str, str]]:
    return [
        (e["event"], e.get("participant", {}).get("identity", ""))
        for e in receiver.events()
        if e["room"]["room_id"] == room
    ]


async def _all_attempted(redis: Redis, rooms: list[str]) -> bool:
    pending = int(await redis.hget(keys.DELIVERY_COUNTS, "pending") or 0)
    return pending >= len(rooms) * 10


async def test_livekit_answering_503_for_a_while_creates_every_room_once_it_recovers(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, receiver: Receiver
) -> None:
    n = 200
    settings = make_settings(
        redis_server.url, emulator.url, create_retry_schedule=",".join(["0.3"] * 30)
    )
    async with run_stack(settings, emulator) as stack:
        await stack.lk(
            "faults", "POST", {"method": "CreateRoom", "count": -1, "code": "unavailable"}
        )
        jobs = await submit(stack.api, bulk("lk", n, receiver.at("/hook")))
        await eventually(lambda: _refused(stack, 50), what="LiveKit refusing creates")
        await stack.lk("faults", "DELETE")
        await eventually(lambda: all_complete(redis, jobs), timeout=60, what="all created")
        calls = (await stack.lk("calls?method=CreateRoom"))["calls"]
        await receiver.wait_for(lambda r: len(created_by_room(receiver)) == n, timeout=30)

    ok = [c for c in calls if c["status"] == 200]
    assert len(ok) == n and len({c["room"] for c in ok}) == n  # each room created once
    print(
        f"\nfault: LiveKit answered 503 to {len(calls) - len(ok)} creates: "
        f"{n} rooms accepted, {len(ok)} created once each after recovery"
    )


async def _refused(stack: Any, n: int) -> bool:
    calls = (await stack.lk("calls?method=CreateRoom"))["calls"]
    return sum(c["status"] == 503 for c in calls) >= n
