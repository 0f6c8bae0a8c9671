"""The API SIGKILLed three times while ten `createBulk` calls of 200 rooms are in flight.

A real `roomkeeper api` process is killed at random moments and restarted on the same port;
every call that failed (reset, refused) is sent again, as a client would. However a kill cut a
call, every room exists once, is announced by one `room_created`, and no create is left queued.
"""

from __future__ import annotations

import asyncio
import random
import signal
from typing import Any

import pytest
from redis.asyncio import Redis

from emulator.server import Emulator
from tests.support.api import LK_KEY, LK_SECRET, Api, eventually, livekit_rooms
from tests.support.bulkload import BulkSubmitter, announcements, job_records
from tests.support.procs import roomkeeper_env, wait_healthy, worker_process
from tests.support.servers import Process, Receiver, RedisServer, free_port, roomkeeper_cmd
from worker import keys

pytestmark = pytest.mark.slow

CALLS = 10
PER_CALL = 200
KILLS = 3


async def start_api(env: dict[str, str], port: int, name: str) -> Process:
    """`roomkeeper api` on `port`, healthy."""
    proc = Process(roomkeeper_cmd("api", "--host", "127.0.0.1", "--port", str(port)), env, name)
    proc.start()
    await wait_healthy(f"http://127.0.0.1:{port}", proc)
    return proc


@pytest.mark.timeout(240)
async def test_an_api_killed_three_times_mid_bulk_leaves_every_room_created_once(
    redis_server: RedisServer, redis: Redis, receiver: Receiver
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    port = free_port()
    async with Emulator(LK_KEY, LK_SECRET, tick_interval=3600) as emu:
        env = roomkeeper_env(redis_server.url, emu.url)
        api_proc = await start_api(env, port, "api-0")
        try:
            async with worker_process(env):
                api = Api(f"http://127.0.0.1:{port}")
                submitters = [
                    BulkSubmitter(api, receiver.at("/hook"), per_call=PER_CALL)
                    for _ in range(CALLS)
                ]
                calls = [
                    asyncio.create_task(
                        s.submit_until_accepted([f"kill-{c}-{i}" for i in range(PER_CALL)])
                    )
                    for c, s in enumerate(submitters)
                ]
                kills: list[dict[str, Any]] = []
                # Random points of progress: after that many rooms were claimed, calls in flight.
                total = CALLS * PER_CALL
                points = sorted(rng.sample(range(PER_CALL // 4, total - PER_CALL), KILLS))
                for k, point in enumerate(points):
                    await eventually(
                        lambda p=point: _reached(redis, p, calls), timeout=60, what="progress"
                    )
                    in_flight = sum(not c.done() for c in calls)
                    api_proc.signal(signal.SIGKILL)
                    api_proc.wait(10)
                    kills.append({"in_flight": in_flight, "claimed": await _claimed(redis)})
                    api_proc = await start_api(env, port, f"api-{k + 1}")
                await asyncio.wait_for(asyncio.gather(*calls), timeout=120)
                accepted: dict[str, str] = {}
                for s in submitters:
                    accepted.update(s.accepted)
                jobs = list(accepted.values())
                try:
                    await eventually(lambda: _done(redis, jobs), timeout=90, what="all created")
                    await receiver.wait_for(
                        lambda r: len(announcements(receiver)) == CALLS * PER_CALL, timeout=60
                    )
                finally:
                    left = await _left_over(redis)
                await api.close()
        finally:
            api_proc.stop()
        rooms = await livekit_rooms(emu.url)

    assert not left, f"seed {seed}: creates left over: {left[:10]}"
    seen = announcements(receiver)
    existing = sum(len(s.existing) for s in submitters)
    assert len(accepted) + existing == CALLS * PER_CALL
    assert len(rooms) == CALLS * PER_CALL
    for room_id, room in rooms.items():
        # One room_created per room: a repeat would be the same event (same webhook-id, sid).
        assert len(seen[room_id]) == 1 and next(iter(seen[room_id]))[1] == room["sid"], room_id
    failed = sum(s.failed for s in submitters)
    refused = sum(s.refused for s in submitters)
    print(
        f"\nfault: API SIGKILLed {KILLS}x during {CALLS} concurrent createBulk calls of {PER_CALL} "
        f"(seed {seed}; kills after {points} rooms claimed; calls in flight / rooms claimed at "
        f"each kill: "
        f"{[(k['in_flight'], k['claimed']) for k in kills]}): {failed} sends cut or refused while it was down, each re-sent, "
        f"{refused} refused; {len(rooms)} rooms in LiveKit, each once, "
        f"{len(seen)} room_created (one each), 0 left queued"
    )


async def _reached(redis: Redis, point: int, calls: list[asyncio.Task[None]]) -> bool:
    """`point` rooms claimed, or every call answered (a kill then would cut nothing)."""
    return all(c.done() for c in calls) or await _claimed(redis) >= point


async def _claimed(redis: Redis) -> int:
    return sum([1 async for _ in redis.scan_iter(keys.job("*"), count=1000)])


async def _done(redis: Redis, jobs: list[str]) -> bool:
    return all(r.get("state") == "complete" for r in await job_records(redis, jobs))


async def _left_over(redis: Redis) -> list[str]:
    """Creates not finished: job records not complete, sessions still queued or creating."""
    left = []
    async for key in redis.scan_iter(keys.job("*"), count=1000):
        state = await redis.hget(key, "state")
        if state != "complete":
            left.append(f"{key} {state}")
    async for key in redis.scan_iter(keys.room("*"), count=1000):
        state = await redis.hget(key, "state")
        if state in ("queued", "creating"):
            left.append(f"{key} {state}")
    return left
