"""Replica confirmation of accepted work: Redis `WAIT` after the writes that accept a request.

Redis replicates asynchronously, so a primary that dies right after acknowledging a write can
take it along: the replica Sentinel promotes never had it. With `ROOMKEEPER_REDIS_MIN_REPLICAS`
set, the API answers "accepted" only after that many replicas hold the write.

`WAIT` counts the replicas that acknowledged the last write of *its own connection*, and the
accepting writes may have gone over other pooled connections. So the confirmation is its own
barrier: one pipeline (one connection) that checks the accepted records exist where it runs,
makes a write, and waits for that write. Replication keeps the primary's order, so a replica
holding the barrier holds everything written before it. Checking the records first closes the
one gap left: a barrier that reconnected to a newly promoted primary that never had the writes
fails instead of confirming them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from worker import keys
from worker.settings import Settings


class NotReplicated(Exception):
    """Fewer replicas than required confirmed the accepted writes in time."""

    def __init__(self, wanted: int, confirmed: int, timeout_s: float, *, missing: bool) -> None:
        self.wanted = wanted
        self.confirmed = confirmed
        self.timeout_s = timeout_s
        self.missing = missing
        super().__init__(self.msg)

    @property
    def msg(self) -> str:
        """What the API answers (no addresses, no secrets)."""
        if self.missing:
            why = "the Redis primary changed before the write was confirmed"
        else:
            why = (
                f"{self.confirmed} of {self.wanted} Redis replica(s) confirmed the write "
                f"within {self.timeout_s:g} s"
            )
        return (
            f"storage not replicated ({why}): not accepted; it may still take effect, so send "
            "it again (a create is idempotent per room_id)"
        )


@dataclass(frozen=True)
class ReplicaWait:
    """How many replicas must hold accepted work (0 = do not wait), and for how long at most."""

    replicas: int
    timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ReplicaWait:
        """`ROOMKEEPER_REDIS_MIN_REPLICAS` and `ROOMKEEPER_REDIS_MIN_REPLICAS_TIMEOUT`."""
        return cls(settings.redis_min_replicas, settings.redis_min_replicas_timeout)

    async def confirm(self, redis: Redis, records: Sequence[str]) -> None:
        """Return once `replicas` replicas hold `records` and every write before this call.

        Raises `NotReplicated` otherwise. The records are keys the accepting writes created;
        they are still there when this runs (a create record outlives its job by days).
        """
        if self.replicas <= 0:
            return
        unique = list(dict.fromkeys(records))
        async with redis.pipeline(transaction=False) as pipe:
            if unique:
                pipe.exists(*unique)
            pipe.incr(keys.REPLICA_BARRIER)
            pipe.execute_command("WAIT", self.replicas, max(1, int(self.timeout_s * 1000)))
            answers = await pipe.execute()
        present = int(answers[0]) if unique else 0
        confirmed = int(answers[-1])
        if present < len(unique):
            raise NotReplicated(self.replicas, confirmed, self.timeout_s, missing=True)
        if confirmed < self.replicas:
            raise NotReplicated(self.replicas, confirmed, self.timeout_s, missing=False)
