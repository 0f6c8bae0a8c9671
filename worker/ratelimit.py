"""A cluster-wide pace for LiveKit calls (`ROOMKEEPER_LIVEKIT_MAX_RPS`), kept in Redis.

Each call reserves the next free slot of a shared timetable (GCRA) and sleeps until it, so any
number of worker processes together stay under the rate, and a 50,000-room term start arrives at
LiveKit as a steady stream instead of a wall.

A caller with a deadline (an arq job must end before its timeout) sets a `budget`: a call whose
slot lies further away than that reserves nothing and raises `RateLimitBusy`, so the work can be
handed back to the queue instead of sleeping past the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

from redis.asyncio import Redis

from worker import keys, lua

_max_wait: ContextVar[float | None] = ContextVar("roomkeeper_rate_max_wait", default=None)


class RateLimitBusy(Exception):
    """No slot within the caller's budget; the next one is about `wait` seconds away."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"rate limit: next slot in {wait:.2f} s")
        self.wait = wait


@contextlib.contextmanager
def budget(seconds: float) -> Iterator[None]:
    """Calls made inside (in this task) wait at most `seconds` for a slot, else RateLimitBusy."""
    token = _max_wait.set(max(seconds, 0.0))
    try:
        yield
    finally:
        _max_wait.reset(token)


class RateLimiter:
    """`await limiter.wait()` before each call; a no-op when the rate is 0 (unlimited)."""

    def __init__(self, redis: Redis, rps: float, *, name: str = "livekit", burst: int = 1) -> None:
        self.rps = rps
        self._key = keys.rate(name)
        self._interval_ms = 1000.0 / rps if rps > 0 else 0.0
        self._burst_ms = self._interval_ms * max(burst - 1, 0)
        self._reserve = lua.script(redis, "worker", "reserve_slot")

    async def wait(self) -> None:
        """Sleep until this process's call fits the shared rate (or raise RateLimitBusy)."""
        if self.rps <= 0:
            return
        max_wait = _max_wait.get()
        now = time.time() * 1000
        wait_ms = float(
            await self._reserve(
                keys=[self._key],
                args=[
                    now,
                    self._interval_ms,
                    self._burst_ms,
                    -1 if max_wait is None else max_wait * 1000,
                ],
            )
        )
        if wait_ms < 0:
            raise RateLimitBusy(-wait_ms / 1000)
        if wait_ms > 0:
            await asyncio.sleep(wait_ms / 1000)
