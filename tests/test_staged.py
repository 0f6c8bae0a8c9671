"""A block of staged writes: the bytes `worker.staged.block` makes, and what Redis applies."""

from __future__ import annotations

from enum import StrEnum

import msgpack
from redis.asyncio import Redis

from worker.staged import block, stage

APPLY = """
for _, command in ipairs(cmsgpack.unpack(ARGV[1])) do redis.call(unpack(command)) end
return 1
"""


class Colour(StrEnum):
    RED = "red"


def _staged(redis: Redis) -> object:
    pipe = stage(redis)
    pipe.hset("h", mapping={"text": "Raum für alle ✓", "n": 3, "f": 0.1, "big": 2**70})
    pipe.hset("h", Colour.RED, b"\x00raw")
    pipe.zadd("z", {"m": 1796155820155}, nx=True)
    pipe.set("s", "v", ex=60)
    return pipe


async def test_a_block_is_each_word_as_the_clients_encoder_writes_it(redis: Redis) -> None:
    pipe = _staged(redis)
    encode = pipe.connection_pool.get_encoder().encode  # type: ignore[attr-defined]
    words = [[encode(w) for w in command] for command, _ in pipe.command_stack]  # type: ignore[attr-defined]
    assert block(pipe) == msgpack.packb(words, use_bin_type=False)


async def test_a_block_applied_in_redis_writes_what_the_commands_would(redis: Redis) -> None:
    await redis.eval(APPLY, 0, block(_staged(redis)))
    assert await redis.hgetall("h") == {
        "text": "Raum für alle ✓",
        "n": "3",
        "f": "0.1",
        "big": str(2**70),
        "red": "\x00raw",
    }
    assert await redis.zscore("z", "m") == 1796155820155
    assert 0 < await redis.ttl("s") <= 60
