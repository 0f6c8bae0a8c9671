"""arq's job layout, as roomkeeper writes it from a Lua script, still agrees with arq itself.

`worker/arqueue.py` spells arq 0.28's job record instead of calling arq's internals; these tests
fail when an arq upgrade changes that layout under it: arq's own `enqueue_job` must write what
`arq_job` describes, and arq's own worker must run a job written that way.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

from arq import func
from arq.constants import expires_extra_ms, job_key_prefix
from redis.asyncio import Redis

from tests.support.servers import RedisServer
from worker import keys
from worker.arqueue import (
    JOB_KEY_PREFIX,
    JOB_TTL_MS,
    ArqRedis,
    Worker,
    arq_job,
    deserialize_job,
    serialize_job,
)

ROOT = Path(__file__).resolve().parent.parent


def test_arq_is_pinned_to_the_version_whose_layout_the_adapter_spells() -> None:
    pinned = [
        line
        for line in (ROOT / "pyproject.toml").read_text().splitlines()
        if line.strip().startswith('"arq')
    ]
    assert pinned == ['    "arq==0.28.0",']
    assert version("arq") == "0.28.0"
    assert (job_key_prefix, expires_extra_ms) == (JOB_KEY_PREFIX, JOB_TTL_MS)


def pool_for(redis_server: RedisServer) -> ArqRedis:
    pool = ArqRedis.from_url(redis_server.url)
    pool.job_serializer = serialize_job
    pool.job_deserializer = deserialize_job
    pool.default_queue_name = keys.QUEUE_NAME
    return pool


async def test_arq_enqueue_job_writes_what_arq_job_describes(
    redis_server: RedisServer, redis: Redis
) -> None:
    pool = pool_for(redis_server)
    try:
        await pool.enqueue_job("create_rooms", ["j1", "j2"], _job_id="by-arq")
    finally:
        await pool.aclose()
    ours = arq_job("create_rooms", (["j1", "j2"],), "by-arq")
    raw_client = Redis.from_url(redis_server.url)  # bytes: the payload is msgpack
    try:
        raw = await raw_client.get(ours.key)
    finally:
        await raw_client.aclose()
    assert raw is not None, "arq no longer keeps its job under the key arq_job names"
    theirs = deserialize_job(raw)
    mine = deserialize_job(ours.payload)
    assert theirs.keys() == mine.keys()
    assert {k: v for k, v in theirs.items() if k != "et"} == {
        k: v for k, v in mine.items() if k != "et"
    }
    assert abs(theirs["et"] - mine["et"]) < 60_000
    assert await redis.zscore(ours.queue, ours.job_id) is not None
    assert abs(await redis.pttl(ours.key) - ours.ttl_ms) < 60_000


async def test_arq_worker_runs_a_job_written_as_arq_job_describes(
    redis_server: RedisServer, redis: Redis
) -> None:
    ran: list[Any] = []

    async def create_rooms(ctx: dict[str, Any], job_ids: list[str]) -> None:
        ran.append((ctx["job_id"], job_ids))

    job = arq_job("create_rooms", (["j1", "j2"],), "by-us")
    raw = Redis.from_url(redis_server.url)
    try:  # what claim_create.lua does with a new claim's job
        await raw.set(job.key, job.payload, px=job.ttl_ms)
        await raw.zadd(job.queue, {job.job_id: job.score})
    finally:
        await raw.aclose()
    pool = pool_for(redis_server)
    worker = Worker(
        functions=[func(create_rooms, name="create_rooms")],
        redis_pool=pool,
        queue_name=keys.QUEUE_NAME,
        burst=True,
        poll_delay=0.01,
        keep_result=0,
        handle_signals=False,
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
    )
    try:
        await worker.async_run()
    finally:
        await worker.close()
    assert ran == [("by-us", ["j1", "j2"])]
    assert worker.jobs_complete == 1 and worker.jobs_failed == 0
