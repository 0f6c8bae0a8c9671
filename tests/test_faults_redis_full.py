"""A full Redis: `maxmemory` with `noeviction` reached in the middle of a bulk.

Real `roomkeeper api` and `worker` processes, a private redis-server whose limit the test lowers
to just above what it holds while creates keep coming. The API answers a plugNmeet-shaped
`status:false` (`storage full, nothing was accepted`) and nothing else, accepts again once memory
frees (the limit lifted), and afterwards every record is whole: no create, session, timer or
delivery half-written.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from redis.asyncio import Redis

from emulator.server import Emulator
from tests.support.api import LK_KEY, LK_SECRET, Api, eventually, livekit_rooms
from tests.support.bulkload import BulkSubmitter, announcements, job_records
from tests.support.procs import api_process, roomkeeper_env, worker_process
from tests.support.servers import Receiver, RedisServer
from worker import keys

pytestmark = pytest.mark.slow

ROOMS = 2000
HEADROOM = 1_000_000  # bytes above what Redis holds when the limit is set
FULL = "storage full, nothing was accepted"


@pytest.fixture
def full_redis() -> Any:
    """A private redis-server (its limits are this test's to change)."""
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.mark.timeout(180)
async def test_a_full_redis_refuses_whole_calls_clearly_and_leaves_no_record_half_written(
    full_redis: RedisServer, receiver: Receiver
) -> None:
    redis = Redis.from_url(full_redis.url, decode_responses=True)
    try:
        async with Emulator(LK_KEY, LK_SECRET, tick_interval=3600) as emu:
            env = roomkeeper_env(
                full_redis.url, emu.url, ROOMKEEPER_CREATE_RETRY_SCHEDULE=",".join(["0.5"] * 200)
            )
            async with api_process(env) as (url, _), worker_process(env) as worker:
                api = Api(url)
                submitter = BulkSubmitter(api, receiver.at("/hook"), per_call=100)
                # The limit sits just above what Redis holds now: the bulk fills it part-way.
                used = int((await redis.info("memory"))["used_memory"])
                await redis.config_set("maxmemory-policy", "noeviction")
                await redis.config_set("maxmemory", used + HEADROOM)
                submitting = asyncio.create_task(submitter.run([f"full-{i}" for i in range(ROOMS)]))
                await eventually(
                    lambda: _refused(submitter, submitting), timeout=60, what="refused calls"
                )
                if submitting.done():
                    submitting.result()  # it gave up: say why
                    info = await redis.info("memory")
                    raise AssertionError(
                        f"every room accepted; Redis never filled: {used} -> "
                        f"{info['used_memory']} (limit {info['maxmemory']}), "
                        f"{submitter.refusals}"
                    )
                accepted_full = len(submitter.accepted)
                await redis.config_set("maxmemory", 0)  # memory frees: the limit is lifted
                await asyncio.wait_for(submitting, timeout=90)
                accepted = dict(submitter.accepted)
                try:
                    await eventually(
                        lambda: _all_created(redis, receiver, accepted), timeout=90, what="created"
                    )
                finally:
                    problems = await half_written(redis)
                    states = Counter(
                        r.get("state") for r in await job_records(redis, list(accepted.values()))
                    )
                    print(f"\njobs by state {dict(states)}; records not whole: {problems[:10]}")
                    if problems:
                        noted = [x for x in worker.output().splitlines() if '"info"' not in x]
                        print(f"worker: {worker.log}", "\n".join(x[:400] for x in noted[-15:]))
                await api.close()
            rooms = await livekit_rooms(emu.url)
    finally:
        await redis.aclose()

    # Nothing but the storage-full answer, a plugNmeet body, while it was full.
    assert set(submitter.refusals) == {f"HTTP 200: {FULL}; retry later"}, submitter.refusals
    assert submitter.failed == 0
    assert not problems, problems[:20]
    seen = announcements(receiver)
    for room_id in accepted:
        assert seen[room_id] == {(seen[room_id].copy().pop()[0], rooms[room_id]["sid"])}, room_id
    assert len(accepted) + len(submitter.existing) == ROOMS
    print(
        f"\nfault: Redis maxmemory (noeviction) reached during a {ROOMS}-room bulk: "
        f"{submitter.refused} calls refused with '{FULL}' once {accepted_full} rooms were "
        f"accepted ({sum(submitter.rooms_refused.values())} more rooms refused one by one in calls "
        f"Redis stored part of), {len(accepted)} accepted in all "
        f"once memory freed ({len(submitter.existing)} found existing on re-send); "
        f"{len(rooms)} created once, each announced once; 0 records half-written"
    )


async def _refused(submitter: BulkSubmitter, submitting: asyncio.Task[None]) -> bool:
    return submitter.refused >= 5 or submitting.done()


async def _all_created(redis: Redis, receiver: Receiver, accepted: dict[str, str]) -> bool:
    records = await job_records(redis, list(accepted.values()))
    if not all(r.get("state") == "complete" for r in records):
        return False
    return len(announcements(receiver)) >= len(accepted)


async def half_written(redis: Redis) -> list[str]:
    """Every record that is not whole, described; [] when all are."""
    problems: list[str] = []
    async for key in redis.scan_iter(keys.job("*"), count=1000):
        job = await redis.hgetall(key)
        # A claimed job holds its request and event; a complete one keeps the session it made.
        needed = (
            {"state", "room_id", "sid"}
            if job.get("state") == "complete"
            else {"state", "room_id", "request", "event_id"}
        )
        missing = needed - set(job)
        if missing:
            problems.append(f"{key} lacks {sorted(missing)}")
        elif job["state"] != "complete":
            problems.append(f"{key} left {job['state']}")
    timers = set(await redis.zrange(keys.schedule_due(keys.TIMERS), 0, -1))
    async for key in redis.scan_iter(keys.room("*"), count=1000):
        room = await redis.hgetall(key)
        room_id = key.removeprefix(keys.room(""))
        if room.get("state") not in ("created", "active"):
            problems.append(f"{key} in state {room.get('state')!r}")
            continue
        sid = room.get("sid", "")
        if not sid or not (room.get("info") or room.get("i0")):
            problems.append(f"{key} live without sid or info")
        if await redis.get(keys.sid(sid)) != room_id:
            problems.append(f"{key}: rk:sid:{sid} does not lead back")
        if await redis.zscore(keys.ACTIVE_ROOMS, room_id) is None:
            problems.append(f"{key} live but not in rk:rooms:active")
        if not any(t.startswith(f"empty|{room_id}|{sid}|") for t in timers):
            problems.append(f"{key} live without its empty_timeout timer")
    async for key in redis.scan_iter(keys.delivery("*"), count=1000):
        if key.endswith(":att"):
            continue
        delivery = await redis.hgetall(key)
        if {"state", "event_id"} - set(delivery) or not {"url", "uh"} & set(delivery):
            problems.append(f"{key} lacks fields: {sorted(delivery)}")
        elif (
            delivery["state"] == "pending"
            and "b0" not in delivery  # a body kept in its record
            and not await redis.exists(keys.event_body(delivery["event_id"]))
        ):
            problems.append(f"{key} pending without its body")
    if await redis.zcard(keys.QUEUED_JOBS):
        problems.append(f"{keys.QUEUED_JOBS} not empty")
    return problems
