"""Pruning finished delivery records once their retention period is over, one worker per turn.

Delivery ids are time-ordered (`id_floor`), so the lexical index of every delivery is a time
index: a turn walks it from the oldest and removes finished records created before the cut-off,
keeping the per-state counts right (`prune.lua`). Pending deliveries are never pruned.
"""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from worker import keys, lua
from worker.logs import get_logger
from worker.settings import Settings
from worker.webhooks.delivery import url_hash
from worker.webhooks.hosts import forget_idle_hosts

log = get_logger("roomkeeper.dispatch")

PRUNE_EVERY_S = 600.0
PRUNE_MAX = 50_000  # records looked at per turn, so one turn stays short
PRUNE_LOCK = keys.DELIVERY_PRUNE_LOCK


def id_floor(unix_s: float) -> str:
    """The lexical lower bound of the delivery ids created at or after `unix_s`."""
    return f"dlv_{max(0, int(unix_s * 1_000_000)):014x}"


def retention_s(settings: Settings) -> int:
    """How long finished delivery records are kept."""
    return int(settings.webhook_retention_days * 86400)


class Pruner:
    """Takes the prune turn when it is this process's time and no other worker has it."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self._script: Any = lua.script(redis, "worker.webhooks", "prune")
        self._next = 0.0

    async def maybe_turn(self) -> None:
        """Prune if this process has not looked for PRUNE_EVERY_S."""
        if time.monotonic() >= self._next:
            self._next = time.monotonic() + PRUNE_EVERY_S
            await self._turn()

    async def _turn(self) -> None:
        """Prune, if no other worker has this turn (one per PRUNE_EVERY_S across the cluster)."""
        try:
            if await self.redis.set(PRUNE_LOCK, "1", nx=True, ex=int(PRUNE_EVERY_S * 0.9)):
                before = time.time() - retention_s(self.settings)
                removed = await self.prune(before, limit=PRUNE_MAX)
                if removed:
                    log.info("webhook deliveries pruned", removed=removed)
                forgotten = await forget_idle_hosts(self.redis, int(before * 1000))
                if forgotten:
                    log.info("idle webhook hosts forgotten", hosts=forgotten)
        except Exception:
            log.exception("pruning webhook deliveries failed")

    async def prune(self, before: float, batch: int = 500, limit: int | None = None) -> int:
        """Remove finished deliveries created before `before` (unix s), at most about `limit`
        in one call; returns how many."""
        upper = f"({id_floor(before)}"
        lower = "-"
        removed = seen = 0
        while limit is None or seen < limit:
            ids = await self.redis.zrangebylex(keys.DELIVERIES, lower, upper, 0, batch)
            if not ids:
                break
            seen += len(ids)
            async with self.redis.pipeline(transaction=False) as pipe:
                for did in ids:
                    pipe.hmget(keys.delivery(did), "room_id", "url", "uh")
                rooms = await pipe.execute()
            async with self.redis.pipeline(transaction=False) as pipe:
                for did, (room, url, uh) in zip(ids, rooms, strict=True):
                    await self._script(
                        keys=[
                            keys.delivery(did),
                            keys.delivery_attempts(did),
                            keys.DELIVERIES,
                            keys.deliveries_by_room(room or ""),
                            keys.deliveries_in_state("pending"),
                            keys.deliveries_in_state("dead"),
                            keys.DELIVERY_COUNTS,
                            keys.deliveries_by_url(uh or url_hash(url or "")),
                        ],
                        args=[did],
                        client=pipe,
                    )
                results = await pipe.execute()
            removed += sum(1 for r in results if int(r) > 0)
            lower = f"({ids[-1]}"
        return removed
