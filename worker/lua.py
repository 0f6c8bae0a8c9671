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
