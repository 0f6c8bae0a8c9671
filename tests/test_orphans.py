"""Create jobs whose arq job Redis lost are found by reconciliation and created after all.

Redis losing acknowledged writes (a failover without a confirming replica) can keep a job's arq
job's end but drop the job's outcome; the state is written here directly, as such a loss leaves
it, and the real worker must finish those rooms while leaving alone a job an arq job still
carries.
"""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from emulator.server import Emulator
from tests.support.api import Api, eventually, livekit_rooms, minimal_request
from tests.support.servers import Receiver, RedisServer
from tests.support.stack import make_settings, run_api, run_worker
from worker import keys


async def bulk(api: Api, room_ids: list[str], hook: str) -> list[str]:
    status, body = await api.post(
        "/auth/room/createBulk",
        {"rooms": [minimal_request(r, webhook_url=hook) for r in room_ids]},
    )
    assert status == 202 and all(r["accepted"] for r in body["results"]), body
    return [r["job_id"] for r in body["results"]]


def created(received: list[Any]) -> dict[str, Any]:
    return {
        hit.json["room"]["room_id"]: hit.json["room"]["sid"]
        for hit in received
        if hit.json["event"] == "room_created"
    }


async def test_jobs_redis_lost_the_arq_job_of_are_created_and_a_carried_one_is_left(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, receiver: Receiver
) -> None:
    settings = make_settings(
        redis_server.url, emulator.url, reconcile_interval=0.3, job_timeout=1.0
    )
    hook = receiver.at("/hook")
    async with run_api(settings) as url:
        api = Api(url)
        lost_queued, lost_started = await bulk(api, ["lost-q", "lost-s"], hook)
        # What a lost write leaves: the arq job ended, the jobs' outcome never recorded (one
        # job had been started, the other not yet).
        await redis.delete(keys.QUEUE_NAME, *await redis.keys("arq:job:*"))
        await redis.hset(keys.job(lost_started), "state", "in_progress")
        await redis.hset(keys.room("lost-s"), "state", "creating")
        # A job whose arq job is deferred by an hour: carried, so not an orphan.
        [waiting] = await bulk(api, ["waiting"], hook)
        [arq_id] = await redis.zrange(keys.QUEUE_NAME, 0, -1)
        await redis.zadd(keys.QUEUE_NAME, {arq_id: (time.time() + 3600) * 1000})

        async with run_worker(settings):
            await receiver.wait_for(lambda r: {"lost-q", "lost-s"} <= created(r).keys())
            jobs = [lost_queued, lost_started]
            await eventually(
                lambda: _states(redis, jobs), what="both jobs complete", describe=lambda: jobs
            )
            # Later reconciliations (the timer re-arms itself) still leave the carried job alone.
            due = await redis.zscore(keys.schedule_due(keys.TIMERS), "reconcile")
            await eventually(
                lambda: _rearmed_after(redis, due), what="another reconciliation", timeout=10
            )
            assert await redis.hget(keys.job(waiting), "state") == "queued"
            assert await redis.zrange(keys.QUEUE_NAME, 0, -1) == [arq_id]
        await api.close()
    rooms = await livekit_rooms(emulator.url)
    assert set(rooms) == {"lost-q", "lost-s"}
    sids = created(receiver.received)
    assert {room: sids[room] for room in ("lost-q", "lost-s")} == {
        room: rooms[room]["sid"] for room in ("lost-q", "lost-s")
    }
    assert await redis.zrange(keys.QUEUED_JOBS, 0, -1) == [waiting]


async def _states(redis: Redis, jobs: list[str]) -> bool:
    return all([await redis.hget(keys.job(j), "state") == "complete" for j in jobs])


async def _rearmed_after(redis: Redis, due: float | None) -> bool:
    score = await redis.zscore(keys.schedule_due(keys.TIMERS), "reconcile")
    return score is not None and due is not None and score > due
