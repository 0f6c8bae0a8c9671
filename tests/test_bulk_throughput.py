"""How bulk creation treats LiveKit: batches, a bounded number of calls in flight, a shared
rate limit across worker processes, and jobs that end before arq's timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from emulator.server import Emulator
from tests.support.api import Api, eventually, livekit_calls, minimal_request
from tests.support.api import emulator as emulator_control
from tests.support.procs import emulator_process, roomkeeper_env, worker_process
from tests.support.servers import RedisServer
from tests.support.stack import make_settings, run_api, run_worker
from tests.test_bulk import arq_idle, bulk, settled
from worker.ratelimit import RateLimitBusy, RateLimiter, budget


async def arrivals(livekit_url: str) -> list[float]:
    return sorted(c["at"] for c in await livekit_calls(livekit_url, "CreateRoom"))


def most_in_window(times: list[float], window: float) -> int:
    """The largest number of `times` inside any half-open window of `window` seconds."""
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


async def bulk_to_the_end(api: Api, redis: Redis, prefix: str, n: int) -> list[dict[str, Any]]:
    """Submit `n` rooms in one createBulk; wait until each job settled and arq is idle."""
    results = (await bulk(api, [minimal_request(f"{prefix}-{i}") for i in range(n)]))["results"]
    jobs = await settled(api, [r["job_id"] for r in results])
    await eventually(lambda: arq_idle(redis), what="arq idle")
    return jobs


async def test_two_limiters_on_one_redis_share_one_rate(redis: Redis) -> None:
    first, second = RateLimiter(redis, 50), RateLimiter(redis, 50)  # two processes' limiters
    stamps: list[float] = []

    async def call(limiter: RateLimiter) -> None:
        await limiter.wait()
        stamps.append(time.monotonic())

    started = time.monotonic()
    await asyncio.gather(*(call(first if i % 2 else second) for i in range(40)))

    # One shared timetable: the k-th call of both together goes no sooner than k slots of 1/50 s
    # after the start (two separate timetables would let the 40 calls through in 20 slots). A
    # call may go late when this loop is busy, never early, so late wake-ups bunched together
    # cannot fail this check; 5 ms allows for the two clocks the limiter and this test read.
    for k, stamp in enumerate(sorted(stamps)):
        assert stamp - started >= k / 50 - 0.005, (k, stamp - started)


async def test_a_call_whose_slot_is_beyond_its_budget_reserves_nothing(redis: Redis) -> None:
    limiter = RateLimiter(redis, 2)  # a slot every 0.5 s
    await limiter.wait()  # takes the slot now; the next one is 0.5 s away

    with budget(0.1), pytest.raises(RateLimitBusy) as busy:
        await limiter.wait()

    assert 0.3 < busy.value.wait <= 0.5
    started = time.monotonic()
    await limiter.wait()  # the refused call took no slot: this one gets the next, not the one after
    assert time.monotonic() - started < 0.6


@pytest.mark.slow
async def test_a_bulk_is_worked_in_batches_not_one_arq_job_per_room(
    redis_server: RedisServer, emulator: Emulator, redis: Redis
) -> None:
    settings = make_settings(redis_server.url, emulator.url, create_batch_size=50)
    async with run_api(settings) as url, run_worker(settings) as worker:
        api = Api(url)
        try:
            jobs = await bulk_to_the_end(api, redis, "batch", 200)
        finally:
            await api.close()

    assert {j["state"] for j in jobs} == {"complete"}
    assert worker.jobs_complete == 4  # 200 rooms / 50 per arq job
    assert len(await livekit_calls(emulator.url, "CreateRoom")) == 200


async def test_a_worker_keeps_at_most_create_concurrency_livekit_calls_in_flight(
    redis_server: RedisServer, emulator: Emulator, redis: Redis
) -> None:
    settings = make_settings(redis_server.url, emulator.url, create_concurrency=4)
    async with run_api(settings) as url, run_worker(settings):
        api = Api(url)
        try:
            await _latency(emulator, 300)
            jobs = await bulk_to_the_end(api, redis, "cc", 20)
        finally:
            await api.close()

    assert {j["state"] for j in jobs} == {"complete"}
    times = await arrivals(emulator.url)
    assert len(times) == 20
    # Each call takes 300 ms: a fifth call may only start once one of the first four answered.
    assert most_in_window(times, 0.25) <= 4
    assert times[-1] - times[0] >= 4 * 0.3 * 0.9


async def _latency(emulator: Emulator, ms: int) -> None:
    """Every CreateRoom from now on takes `ms` milliseconds."""
    fault = {"method": "CreateRoom", "count": -1, "latency_ms": ms}
    await emulator_control(emulator.url, "faults", "POST", fault)


@pytest.mark.slow
async def test_rooms_without_a_slot_before_the_deadline_move_to_a_fresh_job(
    redis_server: RedisServer, emulator: Emulator, redis: Redis
) -> None:
    # A 2 s job timeout leaves time to start only the first two slow calls of a batch; the rest
    # must go to new jobs rather than let arq time the job out (which would strand its rooms).
    settings = make_settings(
        redis_server.url, emulator.url, create_concurrency=2, job_timeout=2.0, livekit_timeout=1.0
    )
    async with run_api(settings) as url, run_worker(settings) as worker:
        api = Api(url)
        try:
            await _latency(emulator, 500)
            jobs = await bulk_to_the_end(api, redis, "slow", 10)
        finally:
            await api.close()

    assert {j["state"] for j in jobs} == {"complete"}
    assert worker.jobs_failed == 0 and worker.jobs_retried == 0
    assert worker.jobs_complete >= 5  # two rooms per job at most
    calls = await livekit_calls(emulator.url, "CreateRoom")
    assert sorted(c["room"] for c in calls) == sorted(f"slow-{i}" for i in range(10))


@pytest.mark.slow
async def test_livekit_calls_stay_under_the_rate_limit_across_worker_processes(
    redis_server: RedisServer, redis: Redis
) -> None:
    rps = 20
    # The emulator in its own process stamps each call as it arrives, whatever this loop does.
    with emulator_process() as livekit_url:
        env = roomkeeper_env(
            redis_server.url,
            livekit_url,
            ROOMKEEPER_LIVEKIT_MAX_RPS=str(rps),
            ROOMKEEPER_CREATE_BATCH_SIZE="5",
            ROOMKEEPER_WORKER_MAX_JOBS="2",  # so both workers get some of the 12 batches
            # A short job: most rooms find no slot within its budget and are handed on.
            ROOMKEEPER_JOB_TIMEOUT="3",
            ROOMKEEPER_LIVEKIT_TIMEOUT="1",
        )
        settings = make_settings(redis_server.url, livekit_url)
        async with (
            worker_process(env, "worker-a") as worker_a,
            worker_process(env, "worker-b") as worker_b,
            run_api(settings) as url,
        ):
            api = Api(url)
            try:
                jobs = await bulk_to_the_end(api, redis, "rate", 60)
            finally:
                await api.close()
            logs = worker_a.output(), worker_b.output()
        times = await arrivals(livekit_url)

    assert {j["state"] for j in jobs} == {"complete"}
    assert len(times) == 60
    assert most_in_window(times, 1.0) <= rps + 1  # GCRA with a burst of one
    assert times[-1] - times[0] >= 59 / rps * 0.9
    assert all('"event":"room created"' in log for log in logs), "both workers created rooms"
    assert not any("TimeoutError" in log for log in logs)
