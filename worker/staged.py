"""Writes built on a redis-py pipeline that is never sent, to pass as a Lua script's argument.

The producers of a state change (`Store.*_cmds`, `Outbox.emit`, `Schedule.add`) add their writes
to a caller's pipeline. A script that decides in Redis whether they apply (an optimistic
transaction whose read the caller already holds) takes them as one argument, a block: the
commands as a msgpack array of arrays of words, each word encoded as redis-py encodes it, which
the script unpacks with Redis's own `cmsgpack`. One script call instead of a WATCH, a read and a
MULTI/EXEC; and one argument per block, because redis-py packs a command's arguments one by one
in Python, copying its buffer for each (thousands of words cost more than the round trips).
"""

from __future__ import annotations

from typing import Any

import msgpack
from redis.asyncio import Redis


def stage(redis: Redis) -> Any:
    """A pipeline that only collects commands (its `block` is read; it is never executed)."""
    return redis.pipeline(transaction=False)


def block(pipe: Any) -> bytes:
    """The commands staged on `pipe`, as one block (a script's argument)."""
    encoder = pipe.connection_pool.get_encoder()
    encode = encoder.encode
    if encoder.encoding.lower().replace("-", "") == "utf8" and encoder.encoding_errors == "strict":
        # msgpack writes a `str` as its UTF-8 bytes, which is what the encoder would have made
        # of it: only the other words (numbers, str subclasses) need the encoder, a method
        # call and several type checks each, most of the cost of a block of a hundred words.
        commands = [
            [w if type(w) is str or type(w) is bytes else encode(w) for w in command]
            for command, _options in pipe.command_stack
        ]
    else:
        commands = [[encode(w) for w in command] for command, _options in pipe.command_stack]
    # Raw strings: the cmsgpack inside Redis reads no msgpack `bin` type.
    return msgpack.packb(commands, use_bin_type=False)  # type: ignore[no-any-return]
