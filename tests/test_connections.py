"""The Redis client's command packing: hiredis's bytes are redis-py's, on a real Redis."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from tests.support.servers import RedisServer
from worker.connections import _retry, fast_packing

ARGS = [
    ("SET", "k", "v"),
    ("EVALSHA", "a" * 40, 2, "k1", "k2", 0, -7, 1.5, 0.1, 1e20, "", "ünïcødé ✓", b"\x00\xff"),
    ("SCRIPT LOAD", "return 1"),
]


@pytest.mark.parametrize("args", ARGS, ids=lambda a: a[0])
def test_packing_gives_redis_pys_own_bytes(args: tuple[object, ...]) -> None:
    plain = Connection()
    packed = fast_packing(Redis()).connection_pool.make_connection()
    assert b"".join(packed.pack_command(*args)) == b"".join(plain.pack_command(*args))


def test_what_redis_py_refuses_is_still_refused() -> None:
    packed = fast_packing(Redis()).connection_pool.make_connection()
    for bad in (True, None):
        with pytest.raises(DataError):
            packed.pack_command("SET", "k", bad)


async def test_a_packing_client_reads_and_writes_a_real_redis(redis_server: RedisServer) -> None:
    client = fast_packing(Redis.from_url(redis_server.url, decode_responses=True))
    # Asked again, it wraps the connection class once.
    assert fast_packing(client).connection_pool.connection_class.__mro__[3] is Connection
    try:
        await client.set("packed:ü", "✓ 1.5")
        assert await client.get("packed:ü") == "✓ 1.5"
        assert await client.eval("return ARGV[1] .. ARGV[2]", 0, 1.5, "x") == "1.5x"
        async with client.pipeline(transaction=True) as pipe:
            pipe.incrbyfloat("packed:n", 0.25).incrbyfloat("packed:n", 0.5)
            assert await pipe.execute() == [0.25, 0.75]
    finally:
        await client.aclose()


async def test_a_pooled_connection_the_server_closed_is_not_handed_out_broken(
    redis_server: RedisServer,
) -> None:
    """The pool's check looks at what the loop has received, not the socket: a connection
    Redis closed meanwhile still gives way to a working one."""
    client = fast_packing(Redis.from_url(redis_server.url, decode_responses=True, **_retry(3)))
    other = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        for _ in range(3):
            killed = await client.client_id()
            await other.client_kill_filter(_id=killed)
            assert await client.set("quiet:k", "v")
            assert await client.client_id() != killed
    finally:
        await client.aclose()
        await other.aclose()
