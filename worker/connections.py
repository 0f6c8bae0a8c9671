"""Redis connections: how every client reaches Redis (retries, Sentinel); roomkeeper's text client.

arq's pools are built on `client_for` in `worker.arqueue`.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker.settings import Settings


def _retry(retries: int) -> dict[str, Any]:
    """Ride out a Redis restart or failover: retry commands on connection loss, with backoff.

    With the default 40 retries, about 30 s in all before an error surfaces (-1: forever). A
    command retried after its reply was lost may run twice; every write roomkeeper makes is
    idempotent or guarded for exactly that reason.
    """
    return {
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=retries),
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


def client_for(
    settings: Settings, redis_class: type[Redis], *, retries: int = 40, **options: Any
) -> Any:
    """A client of `redis_class` (a Sentinel master when sentinels are set).

    It connects on first use, so building one never waits and cannot be left half-open. With
    Sentinel, the password, user and database still come from `ROOMKEEPER_REDIS_URL`, so every
    client reaches the same data.
    """
    options = {**_retry(retries), **options}
    if settings.redis_sentinels:
        url = parse_url(settings.redis_url)
        sentinel = Sentinel(
            _sentinel_hosts(settings),
            # A sentinel that hangs must not hold up finding the primary: the next one is asked.
            sentinel_kwargs={
                "socket_timeout": SENTINEL_TIMEOUT_S,
                "socket_connect_timeout": SENTINEL_TIMEOUT_S,
            },
            password=url.get("password"),
            username=url.get("username"),
            db=url.get("db", 0),
            **options,
        )
        return sentinel.master_for(settings.redis_sentinel_master, redis_class=redis_class)
    return redis_class.from_url(settings.redis_url, **options)


def redis_client(settings: Settings, **kwargs: Any) -> Redis:
    """A text-mode client for roomkeeper's keys."""
    client: Redis = client_for(settings, Redis, decode_responses=True, **kwargs)
    return client
