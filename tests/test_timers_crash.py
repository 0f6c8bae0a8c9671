"""Timers are durable: a worker killed with SIGKILL leaves them for the next worker, on time."""

from __future__ import annotations

import signal

import pytest
from redis.asyncio import Redis

from emulator.server import Emulator
from tests.support.api import (
    LK_KEY,
    LK_SECRET,
    Api,
    emulator,
    eventually,
    livekit_calls,
    minimal_request,
)
from tests.support.procs import roomkeeper_env, worker_process
from tests.support.servers import RedisServer
from tests.support.stack import make_settings, run_api
from worker import keys

pytestmark = pytest.mark.slow  # real processes or injected faults


async def test_a_timer_pending_when_its_worker_is_killed_fires_on_time_in_the_next_worker(
    redis_server: RedisServer, redis: Redis
) -> None:
    async with Emulator(LK_KEY, LK_SECRET, tick_interval=3600) as emu:
        env = roomkeeper_env(redis_server.url, emu.url)
        settings = make_settings(redis_server.url, emu.url)
        async with run_api(settings) as url:
            api = Api(url)
            async with worker_process(env, "doomed") as doomed:
                await api.create({**minimal_request("durable"), "empty_timeout": 6})
                doomed.signal(signal.SIGKILL)
                doomed.wait(10)
            room = await emulator(emu.url, "rooms/durable")
            deadline = int(room["creation_time_ms"]) / 1000 + 6
            assert (
                await redis.zcard(keys.schedule_due(keys.TIMERS)) >= 1
            )  # the timer outlived its worker

            async with worker_process(env, "heir"):
                calls = await eventually(
                    lambda: livekit_calls(emu.url, "DeleteRoom"), timeout=15, what="DeleteRoom"
                )
                assert calls[0]["at"] >= deadline  # on time: never before it
                await eventually(
                    lambda: _ended(redis, "durable"), what="room ended by the new worker"
                )
            await api.close()


async def _ended(redis: Redis, room_id: str) -> bool:
    return await redis.hget(keys.room(room_id), "state") == "ended"
