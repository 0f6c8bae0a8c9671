"""A cluster-wide pace for LiveKit calls (`ROOMKEEPER_LIVEKIT_MAX_RPS`), kept in Redis.

Each call reserves the next free slot of a shared timetable (GCRA) and sleeps until it, so any
number of worker processes together stay under the rate, and a 50,000-room term start arrives at
LiveKit as a steady stream instead of a wall.
"""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from worker.keys import PREFIX

# KEYS: tat   ARGV: now_ms, interval_ms, burst_ms   → ms to wait before the call may go
_RESERVE = """
local now = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if tat < now then tat = now end
local new_tat = tat + tonumber(ARGV[2])
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1000)
local wait = tat - now - tonumber(ARGV[3])
if wait < 0 then wait = 0 end
return tostring(wait)
"""


class RateLimiter:
    """`await limiter.wait()` before each call; a no-op when the rate is 0 (unlimited)."""

    def __init__(self, redis: Redis, rps: float, *, name: str = "livekit", burst: int = 1) -> None:
        self.rps = rps
        self._key = f"{PREFIX}rate:{name}"
        self._interval_ms = 1000.0 / rps if rps > 0 else 0.0
        self._burst_ms = self._interval_ms * max(burst - 1, 0)
        self._reserve = redis.register_script(_RESERVE)

    async def wait(self) -> None:
        """Sleep until this process's call fits the shared rate."""
        if self.rps <= 0:
            return
        now = time.time() * 1000
        wait_ms = float(
            await self._reserve(keys=[self._key], args=[now, self._interval_ms, self._burst_ms])
        )
        if wait_ms > 0:
            await asyncio.sleep(wait_ms / 1000)
