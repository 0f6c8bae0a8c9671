"""A create job run again (arq re-runs an interrupted job) settles by what its room shows.

The state is written directly, as a crash leaves it, and the create path runs on real Redis and
the emulator: a job whose room it already made completes with that room and calls LiveKit no
more; a job whose room a newer create has taken fails as superseded and leaves that create be.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from emulator.server import Emulator
from tests.support.api import livekit_calls
from worker import keys
from worker.deps import Deps, open_deps
from worker.rooms.create import create_batch
from worker.rooms.session import CreateJob, JobState, RoomSession, RoomState
from worker.settings import Settings


@pytest.fixture
async def deps(settings: Settings) -> AsyncIterator[Deps]:
    opened = await open_deps(settings)
    try:
        yield opened
    finally:
        await opened.aclose()


async def a_job(redis: Redis, job_id: str, room_id: str) -> None:
    job = CreateJob(
        job_id, room_id=room_id, state=JobState.IN_PROGRESS, request={"room_id": room_id}
    )
    await redis.hset(keys.job(job_id), mapping=job.to_mapping())


async def test_a_rerun_job_completes_with_its_live_room_and_a_superseded_one_fails(
    deps: Deps, redis: Redis, emulator: Emulator
) -> None:
    made = RoomSession(
        "made",
        state=RoomState.ACTIVE,
        job_id="j-made",
        sid="RM_made",
        info={"sid": "RM_made", "name": "made"},
    )
    async with redis.pipeline(transaction=True) as pipe:
        deps.store.created_cmds(pipe, made, sid_ttl_s=60)
        pipe.hset(keys.room("taken"), mapping={"state": "queued", "job_id": "j-newer"})
        await pipe.execute()
    await a_job(redis, "j-made", "made")
    await a_job(redis, "j-old", "taken")

    assert await create_batch(deps, ["j-made", "j-old"]) == []

    done, old = await deps.store.create_jobs(["j-made", "j-old"])
    assert (done.state, done.sid, done.room_id) == (JobState.COMPLETE, "RM_made", "made")
    assert (old.state, old.msg) == (JobState.FAILED, "superseded by a newer create of this room")
    taken = await deps.store.session("taken")
    assert (taken.state, taken.job_id) == (RoomState.QUEUED, "j-newer")
    assert await livekit_calls(emulator.url, "CreateRoom") == []
