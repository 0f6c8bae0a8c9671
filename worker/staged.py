"""Writes built on a redis-py pipeline that is never sent, to pass as a Lua script's arguments.

The producers of a state change (`Store.*_cmds`, `Outbox.emit`, `Schedule.add`) add their writes
to a caller's pipeline. A script that decides in Redis whether they apply (an optimistic
transaction whose read the caller already holds) takes them as a block of words: the number of
commands, then each command's word count and its words. One script call instead of a WATCH, a
read and a MULTI/EXEC: one round trip, and no per-command reply to parse.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.typing import EncodableT


def stage(redis: Redis) -> Any:
    """A pipeline that only collects commands (its `block` is read; it is never executed)."""
    return redis.pipeline(transaction=False)


def block(pipe: Any) -> list[EncodableT]:
    """The commands staged on `pipe`, as one block of a script's arguments."""
    words: list[EncodableT] = [len(pipe.command_stack)]
    for command, _options in pipe.command_stack:
        words.append(len(command))
        words.extend(command)
    return words
