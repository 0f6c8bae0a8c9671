"""A timer armed far ahead wakes nobody, and still fires on time; one due soon wakes the consumer.

Creating rooms arms their timers minutes ahead; waking the timer consumer for each group of them
cost it three round trips for nothing, since it looks again at least once a second for what falls
due within its look-ahead. Timers due within `WAKE_WITHIN_MS` wake it (a warning due at once).
"""

from __future__ import annotations

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
from worker import keys, timer_thread
from worker.rooms.timers import WAKE_WITHIN_MS, needs_wake


def test_only_timers_due_within_the_consumers_horizon_wake_it() -> None:
    # The consumer claims at least every IDLE_MAX_S what is due within LOOKAHEAD_MS; anything
    # due later than both together is claimed before its deadline without a wake-up.
    assert timer_thread.IDLE_MAX_S * 1000 + timer_thread.LOOKAHEAD_MS < WAKE_WITHIN_MS
    now = 1_000_000
    assert needs_wake(now - 10, now)  # overdue
    assert needs_wake(now + WAKE_WITHIN_MS - 1, now)
    assert not needs_wake(now + WAKE_WITHIN_MS, now)
    assert not needs_wake(None, now)  # no timers


@pytest.mark.slow
async def test_a_timer_armed_beyond_the_wake_horizon_fires_on_its_deadline_never_before(
    redis_server: RedisServer, redis: Redis
) -> None:
    timeout = WAKE_WITHIN_MS // 1000 + 3
    async with Emulator(LK_KEY, LK_SECRET, tick_interval=3600) as emu:
        env = roomkeeper_env(redis_server.url, emu.url)
        settings = make_settings(redis_server.url, emu.url)
        async with run_api(settings) as url, worker_process(env, "worker"):
            api = Api(url)
            await api.create({**minimal_request("far"), "empty_timeout": timeout})
            room = await emulator(emu.url, "rooms/far")
            deadline = int(room["creation_time_ms"]) / 1000 + timeout
            calls = await eventually(
                lambda: livekit_calls(emu.url, "DeleteRoom"), timeout=timeout + 10, what="end"
            )
            assert calls[0]["at"] >= deadline  # never before its deadline
            assert len(calls) == 1
            await eventually(lambda: _ended(redis, "far"), what="session ended")
            await api.close()


async def _ended(redis: Redis, room_id: str) -> bool:
    return await redis.hget(keys.room(room_id), "state") == "ended"
