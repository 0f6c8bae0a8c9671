"""The event loop `roomkeeper api` and `roomkeeper worker` run on: uvloop unless told otherwise.

uvloop's transports write and read sockets in C; every Redis command and webhook POST is a socket
write, so it is the cheapest lever on the CPU per unit of work (see the README's profile table).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], kind: str = "uvloop") -> T:
    """`asyncio.run(main)` on the chosen loop (`uvloop` or `asyncio`)."""
    factory = uvloop.new_event_loop if kind == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
