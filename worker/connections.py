"""Redis connections: how every client reaches Redis (retries, Sentinel); roomkeeper's text client.

arq's pools are built on `client_for` in `worker.arqueue`.
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

import hiredis
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


class _HiredisPacking:
    """Commands packed by hiredis (C) instead of redis-py's Python loop: a delivery's script
    call has some forty arguments, and packing them showed in the worker's profile. The bytes
    are the same; anything hiredis does not take (a bool, None) goes to redis-py's packer,
    which refuses it as it always did."""

    def pack_command(self, *args: Any) -> list[bytes]:
        command = args[0]
        if isinstance(command, str) and " " in command:  # `SCRIPT LOAD`: sent as two words
            args = (*command.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            packed: list[bytes] = super().pack_command(*args)  # type: ignore[misc]
            return packed


class _QuietCheck:
    """A pooled connection checked for unread data or a closed socket without a turn of the
    event loop: redis-py's own check reads the socket under a zero timeout, which costs a
    cancelled read (some 30 µs) on every command. Whatever the loop has already received is
    looked at here; anything unusual (data waiting, end of stream, an error) goes to redis-py's
    check as before. A reply left unread is never waiting anyway, since redis-py drops a
    connection whose command failed or was cancelled; a socket closed since the loop last looked
    fails the command, which is retried on a new connection like any connection loss."""

    _reader: asyncio.StreamReader | None
    _parser: Any

    async def can_read_destructive(self) -> bool:
        stream, parsed = self._reader, getattr(self._parser, "_reader", None)
        if (
            stream is not None
            and isinstance(parsed, hiredis.Reader)
            and not parsed.has_data()
            and not getattr(stream, "_buffer", True)
            and not stream.at_eof()
            and stream.exception() is None
        ):
            return False
        answer: bool = await super().can_read_destructive()  # type: ignore[misc]
        return answer


@cache
def _packing(connection_class: type) -> type:
    return type(connection_class.__name__, (_HiredisPacking, _QuietCheck, connection_class), {})


def fast_packing(client: Any) -> Any:
    """`client` with its pool's connections packing commands through hiredis (whatever kind
    of connection the URL or Sentinel chose: TCP, TLS, Unix socket)."""
    pool = client.connection_pool
    packing = issubclass(pool.connection_class, _HiredisPacking)
    if not packing and pool.connection_kwargs.get("encoding", "utf-8") in ("utf-8", "utf8"):
        pool.connection_class = _packing(pool.connection_class)
    return client


def redis_client(settings: Settings, **kwargs: Any) -> Redis:
    """A text-mode client for roomkeeper's keys."""
    client: Redis = client_for(settings, Redis, decode_responses=True, **kwargs)
    return fast_packing(client)
