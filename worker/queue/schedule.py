"""A durable schedule of members due at a time, worked under a lease.

One Redis sorted set holds `member -> due time (ms)`. A consumer *claims* due members: their score
moves to `now + lease`, so no other consumer sees them until the lease runs out, and a consumer that
dies (SIGKILL included) simply lets the lease expire and the member falls due again. A claim token
fences a late consumer out. Members may own a FIFO list (`{name}:q:{member}`): the member stays
scheduled while its list has items, which gives strict order within a member and independence
between members. Timers, LiveKit's inbound events and webhook deliveries all run on this.

A wake list lets producers cut a sleeping consumer's wait short, so latency is not a poll interval.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from worker import keys, lua

_WAKE_KEEP = 64
# How long a claim holds a member unless its schedule says otherwise: far longer than the work
# of one claim, so only a consumer that died loses its members (they fall due again after it).
DEFAULT_LEASE_MS = 30_000


def now_ms() -> int:
    """Wall-clock milliseconds: every process compares the same Redis scores."""
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Claim:
    """A member this consumer holds until its lease runs out."""

    member: str
    token: str
    due_ms: int = 0  # when it fell (or, claimed ahead, falls) due


class Schedule:
    """One schedule's sorted set, leases, wake list and per-member lists (keys in `keys.py`).

    Build one per schedule and process (`Deps` holds them); `lease_ms` is how long a claim holds.
    """

    def __init__(self, redis: Redis, name: str, *, lease_ms: int = DEFAULT_LEASE_MS) -> None:
        self.redis = redis
        self.name = name
        self.lease_ms = lease_ms
        self.due_key = keys.schedule_due(name)
        self.lease_key = keys.schedule_leases(name)
        self.wake_key = keys.schedule_wake(name)
        self._claim = lua.script(redis, "worker.queue", "claim")
        self._release = lua.script(redis, "worker.queue", "release")
        self._pop = lua.script(redis, "worker.queue", "pop")
        self._pop_many = lua.script(redis, "worker.queue", "pop_many")

    def list_key(self, member: str) -> str:
        """The FIFO list a member owns."""
        return keys.schedule_list(self.name, member)

    # Producers add commands to a caller's pipeline, so a state change and the work it causes
    # commit together.
    def add(
        self, pipe: Any, member: str, at_ms: int, *, replace: bool = False, wake: bool = True
    ) -> None:
        """Schedule `member` at `at_ms` (keeping an earlier/leased time unless `replace`).

        `wake=False` leaves the wake-up to the caller, who adds many members to one pipeline
        and calls `wake` once.
        """
        if replace:
            pipe.zadd(self.due_key, {member: at_ms})
        else:
            pipe.zadd(self.due_key, {member: at_ms}, nx=True)
        if wake:
            self.wake(pipe)

    def push(self, pipe: Any, member: str, item: str, at_ms: int, *, wake: bool = True) -> None:
        """Append `item` to `member`'s list and make sure the member is scheduled."""
        pipe.rpush(self.list_key(member), item)
        self.add(pipe, member, at_ms, wake=wake)

    def remove(self, pipe: Any, member: str) -> None:
        """Unschedule a member (a timer that no longer applies)."""
        pipe.zrem(self.due_key, member)

    def wake(self, pipe: Any) -> None:
        """Cut a sleeping consumer's wait short (once per pipeline is enough)."""
        pipe.rpush(self.wake_key, 1)
        pipe.ltrim(self.wake_key, -_WAKE_KEEP, -1)

    async def claim(
        self, limit: int, at_ms: int | None = None, *, answer_wakes: bool = False
    ) -> list[Claim]:
        """Take up to `limit` members due by `at_ms` (default now) under a fresh lease of
        `lease_ms` from then.

        `answer_wakes`: when this takes every member due, the wake-ups pushed before it are
        dropped, since it answered them (a queue's producers wake the schedule once per event,
        though the queue's holder will find the event anyway); any pushed later stay."""
        prefix = secrets.token_hex(6) + ":"
        now = now_ms() if at_ms is None else at_ms
        claim_keys = [self.due_key, self.lease_key]
        if answer_wakes:
            claim_keys.append(self.wake_key)
        raw = await self._claim(keys=claim_keys, args=[now, limit, self.lease_ms, prefix])
        items = [x.decode() if isinstance(x, bytes) else str(x) for x in raw]
        return [
            Claim(items[i], items[i + 1], int(float(items[i + 2]))) for i in range(0, len(items), 3)
        ]

    async def release(self, claim: Claim, next_ms: int | None = None) -> bool:
        """Give a member back: due at `next_ms`, or now while its list has items, else gone."""
        ok = await self._release(
            keys=[self.due_key, self.lease_key, self.list_key(claim.member), self.wake_key],
            args=[
                claim.member,
                claim.token,
                "" if next_ms is None else next_ms,
                now_ms(),
                _WAKE_KEEP,
            ],
        )
        return bool(ok)

    async def pop(self, claim: Claim, head: str) -> int:
        """Drop the handled head of a member's list, renew the lease; -1 if the lease was lost."""
        return int(
            await self._pop(
                keys=[self.due_key, self.lease_key, self.list_key(claim.member)],
                args=[claim.member, claim.token, head, now_ms() + self.lease_ms],
            )
        )

    async def pop_next(self, claim: Claim, head: str) -> tuple[bool, str | None]:
        """`pop`, and the new head in the same round trip: (whether the lease still holds, the
        member's next item or None). With no next item the member is given back (released)."""
        raw = await self._pop(
            keys=[self.due_key, self.lease_key, self.list_key(claim.member)],
            args=[claim.member, claim.token, head, now_ms() + self.lease_ms, "1"],
        )
        return self.popped(raw)

    def pop_next_cmd(self, pipe: Any, claim: Claim, head: str) -> None:
        """Queue `pop_next` on a pipeline or transaction, by the script's SHA (a pipeline's own
        script handling would ask `SCRIPT EXISTS` first, a round trip); its answer goes to
        `popped`, and when the script was not loaded yet it fails alone (NOSCRIPT)."""
        pipe.evalsha(
            self._pop.sha,
            3,
            *(self.due_key, self.lease_key, self.list_key(claim.member)),
            *(claim.member, claim.token, head, now_ms() + self.lease_ms, "1"),
        )

    @staticmethod
    def popped(raw: Any) -> tuple[bool, str | None]:
        """What `pop_next` answers, from pop.lua's reply."""
        if not isinstance(raw, list):
            return False, None
        nxt = raw[1]
        return True, (nxt.decode() if isinstance(nxt, bytes) else nxt) or None

    async def pop_many(
        self, claim: Claim, handled: list[str], limit: int
    ) -> tuple[bool, list[str]]:
        """Drop the `handled` heads of a member's list, renew the lease, and read its next
        items: (whether the lease still holds, at most `limit` next items). With none left the
        member is given back (released)."""
        raw = await self._pop_many(
            keys=[self.due_key, self.lease_key, self.list_key(claim.member)],
            args=[claim.member, claim.token, now_ms() + self.lease_ms, limit, *handled],
        )
        return self.popped_many(raw)

    def pop_many_cmd(self, pipe: Any, claim: Claim, handled: list[str], limit: int) -> None:
        """Queue `pop_many` on a transaction by the script's SHA, as `pop_next_cmd` does; its
        answer goes to `popped_many` (NOSCRIPT when the script was not loaded yet)."""
        pipe.evalsha(
            self._pop_many.sha,
            3,
            *(self.due_key, self.lease_key, self.list_key(claim.member)),
            *(claim.member, claim.token, now_ms() + self.lease_ms, limit, *handled),
        )

    @staticmethod
    def popped_many(raw: Any) -> tuple[bool, list[str]]:
        """What `pop_many` answers, from pop_many.lua's reply."""
        if not isinstance(raw, list):
            return False, []
        return True, [x.decode() if isinstance(x, bytes) else str(x) for x in raw]

    async def heads(self, member: str, limit: int) -> list[str]:
        """The oldest `limit` items of a member's list, oldest first."""
        raw = await self.redis.lrange(self.list_key(member), 0, limit - 1)
        return [x.decode() if isinstance(x, bytes) else str(x) for x in raw]

    async def head(self, member: str) -> str | None:
        """The oldest item of a member's list."""
        raw = await self.redis.lindex(self.list_key(member), 0)
        return raw.decode() if isinstance(raw, bytes) else raw

    async def next_due_ms(self) -> int | None:
        """When the earliest member falls due (leased members included)."""
        first = await self.redis.zrange(self.due_key, 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    async def wait(self, redis: Redis, timeout: float) -> None:
        """Block on the wake list (on a connection of the caller's) for at most `timeout` s."""
        await redis.blpop([self.wake_key], timeout=max(timeout, 0.001))
