"""The one loader of roomkeeper's Lua scripts, each a `.lua` file beside the module that runs it.

A script's file documents its KEYS and ARGV at the top and names them as locals, so a reader
never counts positions. Files are read once per process (they ship in the wheel as package data).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

from redis.asyncio import Redis


@cache
def source(package: str, name: str) -> str:
    """The text of `name.lua` in `package` (e.g. `source("worker.queue", "claim")`)."""
    return files(package).joinpath(f"{name}.lua").read_text(encoding="utf-8")


def script(redis: Redis, package: str, name: str) -> Any:
    """`name.lua` of `package` registered on `redis` (called as EVALSHA, loaded when missing)."""
    return redis.register_script(source(package, name))


@cache
def chained_source(first: tuple[str, str], second: str) -> str:
    """One script that runs the script `first` (package, name), then the source `second`, each
    with its own KEYS and ARGV, and returns both answers: `{first's, second's}`.

    Called with KEYS = first's then second's, ARGV = [len(first's KEYS), len(first's ARGV),
    first's ARGV..., second's ARGV...]. Each part reads its own KEYS/ARGV unchanged (they are the
    parameters of a function wrapping its text), so a script's file stays the one truth of it.
    """
    return "\n".join(
        [
            "local function first(KEYS, ARGV)",
            source(*first),
            "end",
            "local function second(KEYS, ARGV)",
            second,
            "end",
            "local n_keys, n_args = tonumber(ARGV[1]), tonumber(ARGV[2])",
            # Split by `unpack` (in C) rather than a loop in Lua: a few µs of every call.
            "local k1, k2 = {unpack(KEYS, 1, n_keys)}, {unpack(KEYS, n_keys + 1)}",
            "local a1, a2 = {unpack(ARGV, 3, n_args + 2)}, {unpack(ARGV, n_args + 3)}",
            "local r1 = first(k1, a1)",
            "return {r1, second(k2, a2)}",
        ]
    )


def chained(redis: Redis, first: tuple[str, str], second: str) -> Any:
    """`chained_source(first, second)` registered on `redis` (see `script`)."""
    return redis.register_script(chained_source(first, second))
