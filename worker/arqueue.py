"""arq behind one small adapter: the job layout roomkeeper writes itself, the pools, the worker.

Everything else imports arq's names from here, so an arq upgrade touches one module. The API's
claim script writes an arq job in the same Lua script that claims the room, so this module spells
arq's job layout (key, payload fields, queue entry) instead of calling arq's internals;
`tests/test_arqueue.py` fails if arq 0.28's own `enqueue_job` and worker stop agreeing with it.
Payloads are msgpack, never pickle: Redis content is data, never code.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import msgpack
from arq import ArqRedis, Retry, Worker, func
from redis.exceptions import RedisError

from worker.connections import client_for
from worker.keys import QUEUE_NAME
from worker.logs import get_logger
from worker.settings import Settings

__all__ = ["ArqRedis", "RerunJob", "Worker", "func"]

log = get_logger("roomkeeper.worker")

RerunJob = Retry  # raised by a job to be run again later (`defer` seconds)

# arq 0.28's job layout (pinned in pyproject.toml; tests/test_arqueue.py keeps this true).
JOB_KEY_PREFIX = "arq:job:"
JOB_TTL_MS = 86_400_000  # how long an unfinished job's record lives (arq's expires_extra_ms)
REDIS_PAUSE_S = 0.5


def serialize_job(data: dict[str, Any]) -> bytes:
    """arq job payloads as msgpack (arq's default is pickle)."""
    return msgpack.packb(data, use_bin_type=True)  # type: ignore[no-any-return]


def deserialize_job(raw: bytes) -> dict[str, Any]:
    """The inverse of `serialize_job`."""
    return msgpack.unpackb(raw, raw=False)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ArqJob:
    """An arq job as `ArqRedis.enqueue_job` would write it, for a script to write atomically.

    The API's claim of a create and the enqueue of its job then happen in one script: no crash
    can leave a claimed room without its job.
    """

    job_id: str
    key: str
    payload: bytes
    ttl_ms: int
    score: int
    queue: str = QUEUE_NAME


def arq_job(function: str, args: tuple[Any, ...], job_id: str) -> ArqJob:
    """The job record and queue entry arq's worker will pick up, due now."""
    now = int(time.time() * 1000)
    # t: tries so far (none), f: function, a: args, k: kwargs, et: enqueue time (ms).
    payload = serialize_job({"t": None, "f": function, "a": list(args), "k": {}, "et": now})
    return ArqJob(job_id, JOB_KEY_PREFIX + job_id, payload, JOB_TTL_MS, now)


def _pool(settings: Settings, **options: Any) -> ArqRedis:
    pool: ArqRedis = client_for(settings, ArqRedis, **options)
    pool.job_serializer = serialize_job
    pool.job_deserializer = deserialize_job
    pool.default_queue_name = QUEUE_NAME
    return pool


def arq_pool(settings: Settings) -> ArqRedis:
    """arq's client for enqueueing (the API's and the workers' own): bytes, msgpack jobs.

    Not arq's `create_pool`: that pings at once and, cancelled mid-ping (a process stopped while
    starting), drops a half-open pool that nothing can close any more. A process starting while
    Redis restarts waits on its first commands instead (the retry policy, about 30 s).
    """
    return _pool(settings)


def worker_pool(settings: Settings) -> ArqRedis:
    """The pool arq's worker polls with: it retries for as long as Redis is away.

    arq lets a connection error in its poll loop end the worker; with this pool its commands
    wait for Redis to come back instead (SIGTERM still stops it: the waits are cancellable).
    """
    return _pool(settings, retries=-1)


class ResilientWorker(Worker):
    """arq's Worker, riding out a Redis restart or a full Redis instead of dying with it.

    arq lets any Redis error in its poll loop end the worker: the worker's pool retries lost
    connections, and the three public steps of a poll that write (starting jobs, running one,
    the heartbeat) catch the rest (a full Redis answers OOM to writes). A failure between taking
    a job slot and starting the job would leak that slot; here the slot is given back and the
    poll goes on later. A job whose run failed on Redis stays queued and runs again.
    """

    async def run_job(self, job_id: str, score: int) -> None:
        """arq's run_job; a Redis failure leaves the job for a later run instead of the loop."""
        try:
            await super().run_job(job_id, score)
        except RedisError as exc:
            log.warning("redis refused an arq job's bookkeeping", job=job_id, error=repr(exc))

    async def heart_beat(self) -> None:
        """arq's heartbeat; a Redis failure skips one beat."""
        try:
            await super().heart_beat()
        except RedisError as exc:
            log.warning("redis unavailable, arq heartbeat skipped", error=type(exc).__name__)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's start_jobs, one job at a time, returning the slot when Redis fails mid-way."""
        for job_id in job_ids:
            taken = self.job_counter
            try:
                await super().start_jobs([job_id])
            except RedisError as exc:
                if self.job_counter > taken:  # arq counted a job it never started
                    self.job_counter -= 1
                    self.sem.release()
                log.warning("redis unavailable, arq polling paused", error=type(exc).__name__)
                await asyncio.sleep(REDIS_PAUSE_S)
                return  # the rest are still queued; the next poll takes them


QUEUE_SCAN_CHUNK = 500


async def queued_args(pool: ArqRedis, function: str) -> list[list[Any]]:
    """The arguments of every job of `function` in arq's queue (due, deferred or running).

    arq keeps a job in its queue until the job ends, retries included, so this is every job of
    `function` that will still run.
    """
    arq_ids = await pool.zrange(QUEUE_NAME, 0, -1)
    found: list[list[Any]] = []
    for start in range(0, len(arq_ids), QUEUE_SCAN_CHUNK):
        chunk = arq_ids[start : start + QUEUE_SCAN_CHUNK]
        keys = [
            JOB_KEY_PREFIX.encode() + (i if isinstance(i, bytes) else i.encode()) for i in chunk
        ]
        for raw in await pool.mget(keys):
            if raw is None:
                continue  # ended meanwhile
            job = deserialize_job(raw)
            if job.get("f") == function:
                found.append(list(job.get("a") or []))
    return found
