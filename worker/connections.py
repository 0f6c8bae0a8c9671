"""Redis connections: roomkeeper's own client (text) and arq's pool (bytes, msgpack jobs)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgpack
from arq import ArqRedis
from arq.connections import RedisSettings
from arq.constants import expires_extra_ms, job_key_prefix
from arq.jobs import serialize_job as arq_serialize_job
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker.keys import QUEUE_NAME
from worker.settings import Settings


def serialize_job(data: dict[str, Any]) -> bytes:
    """arq job payloads as msgpack: Redis content is data, never code (arq's default is pickle)."""
    return msgpack.packb(data, use_bin_type=True)  # type: ignore[no-any-return]


def deserialize_job(raw: bytes) -> dict[str, Any]:
    """The inverse of `serialize_job`."""
    return msgpack.unpackb(raw, raw=False)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ArqJob:
    """An arq job as `ArqRedis.enqueue_job` would write it, for a script to write atomically.

    The API's claim of a create and the enqueue of its job then happen in one Redis round trip
    and one transaction: no crash can leave a claimed room without its job.
    """

    job_id: str
    key: str
    payload: bytes
    ttl_ms: int
    score: int
    queue: str = QUEUE_NAME


def arq_job(function: str, args: tuple[Any, ...], job_id: str) -> ArqJob:
    """The job record and queue entry arq's worker will pick up (msgpack, never pickle)."""
    now = int(time.time() * 1000)
    payload = arq_serialize_job(function, args, {}, None, now, serializer=serialize_job)
    return ArqJob(job_id, job_key_prefix + job_id, payload, expires_extra_ms, now)


def _retry() -> dict[str, Any]:
    """Ride out a Redis restart or failover: retry commands on connection loss, with backoff.

    About 30 s in all before an error surfaces. A command retried after its reply was lost may
    run twice; every write roomkeeper makes is idempotent or guarded for exactly that reason.
    """
    return {
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=40),
        # ConnectionError covers BusyLoadingError: a restarted Redis answers LOADING until its
        # AOF is read back.
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }


SENTINEL_TIMEOUT_S = 1.0


def _sentinel_hosts(settings: Settings) -> list[tuple[str, int]]:
    hosts = []
    for entry in settings.redis_sentinels:
        host, _, port = entry.rpartition(":")
        hosts.append((host or entry, int(port) if host else 26379))
    return hosts


def _client(settings: Settings, redis_class: type[Redis], **options: Any) -> Any:
    """A client of `redis_class` (a Sentinel master when sentinels are set).

    It connects on first use, so building one never waits and cannot be left half-open. With
    Sentinel, the password, user and database still come from `ROOMKEEPER_REDIS_URL`, so every
    client reaches the same data.
    """
    options = {**_retry(), **options}
    if settings.redis_sentinels:
        url = RedisSettings.from_dsn(settings.redis_url)
        sentinel = Sentinel(
            _sentinel_hosts(settings),
            # A sentinel that hangs must not hold up finding the primary: the next one is asked.
            sentinel_kwargs={
                "socket_timeout": SENTINEL_TIMEOUT_S,
                "socket_connect_timeout": SENTINEL_TIMEOUT_S,
            },
            password=url.password,
            username=url.username,
            db=url.database,
            **options,
        )
        return sentinel.master_for(settings.redis_sentinel_master, redis_class=redis_class)
    return redis_class.from_url(settings.redis_url, **options)


def redis_client(settings: Settings, **kwargs: Any) -> Redis:
    """A text-mode client for roomkeeper's keys."""
    client: Redis = _client(settings, Redis, decode_responses=True, **kwargs)
    return client


def arq_pool(settings: Settings) -> ArqRedis:
    """arq's client (the API's and workers' enqueueing, and a worker's own polling): bytes,
    msgpack jobs, roomkeeper's queue.

    Not arq's `create_pool`: that pings at once and, cancelled mid-ping (a process stopped while
    starting), drops a half-open pool that nothing can close any more. A worker starting while
    Redis restarts waits on its first commands instead (the retry policy above, about 30 s).
    """
    pool: ArqRedis = _client(settings, ArqRedis)
    pool.job_serializer = serialize_job
    pool.job_deserializer = deserialize_job
    pool.default_queue_name = QUEUE_NAME
    return pool
