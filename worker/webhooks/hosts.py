"""Protection for receivers, per target host: a circuit breaker and a rate limit, kept in Redis.

A host is `scheme://host:port`. Every attempt asks `host_admit.lua` first, one script that both
checks the breaker and reserves a slot on the host's timetable (GCRA), so any number of worker
processes share one view: run by `HostGuard.admit`, or (`admit_head`) at the end of the script
that read the delivery, in the same round trip. A delivery the guard holds is not attempted and
keeps its attempts: its queue is released until the guard says to come back, so nothing behind
it overtakes it.

The breaker counts consecutive failed attempts to a host across all its rooms (5xx, 429,
timeouts, connection errors; any other answer means the host is up and resets the count). At the
threshold it opens: queues wait, and the one that has waited longest goes as the probe, at most
once per probe interval. The probe is a real attempt of that delivery and counts like any other;
when an attempt succeeds the breaker closes and every waiting queue is made due at once. A
`Retry-After` halves the host's rate for at least that long.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis

from worker import keys, lua
from worker.batching import batcher
from worker.metrics import BREAKER_TRANSITIONS, HELD
from worker.queue.schedule import Claim, Schedule, now_ms
from worker.settings import Settings
from worker.webhooks.attempt import AttemptResult

BREAKER_OPEN = "host unavailable, breaker open"
RATE_HELD = "waiting for the host's rate limit"
# Waits for a rate slot shorter than this are slept through while holding the queue's lease;
# longer ones hand the queue back (the lease outlives the attempt timeout by 5 s).
MAX_SLEEP_MS = 1000
SLOW_MIN_MS = 30_000  # a Retry-After lowers the rate for at least this long
SLOW_FLOOR_RPS = 1.0


@lru_cache(maxsize=4096)
def host_key(url: str) -> str:
    """`scheme://host:port` of a URL (default ports spelled out), the unit of protection; each
    URL parsed once (it is asked about before every attempt)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = (parts.hostname or "").lower()
    except ValueError:
        return "invalid"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}:{port}"


def host_failed(result: AttemptResult) -> bool:
    """Whether an attempt says the host is in trouble (as opposed to answering)."""
    if result.status is not None:
        return result.status >= 500 or result.status == 429
    return not result.permanent


@dataclass(frozen=True)
class Admission:
    """What the guard said: go (after `wait_s`, maybe as the probe) or hold until `until_ms`."""

    go: bool
    wait_s: float = 0.0
    probe: bool = False
    failures: int = 0
    until_ms: int = 0
    why: str = ""


@dataclass(frozen=True)
class Held:
    """The guard holds this delivery: its queue comes back at `until_ms`, no attempt used."""

    until_ms: int
    why: str


@dataclass(frozen=True)
class HostView:
    """One host as the console and the metrics show it."""

    host: str
    state: str
    failures: int
    waiting: int
    rps: float
    lowered_until: float | None
    last_attempt: float
    probe_at: float | None


class HostGuard:
    """The breaker and the rate limit of every host, shared by all workers through Redis."""

    def __init__(self, redis: Redis, settings: Settings, schedule: Schedule) -> None:
        self.redis = redis
        self.settings = settings
        self.schedule = schedule
        self.batch = batcher(redis)
        self._admit = lua.script(redis, "worker.webhooks", "host_admit")
        self._observe = lua.script(redis, "worker.webhooks", "host_observe")
        # host_admit.lua for a queue's head, run by the script that read the head.
        self.admit_head = lua.source("worker.webhooks", "host_admit_head") + lua.source(
            "worker.webhooks", "host_admit"
        )

    def _admit_keys(self, host: str, record: str) -> list[str]:
        return [keys.host(host), keys.host_waiting(host), keys.host_tat(host), keys.HOSTS, record]

    def _admit_args(self, qid: str, host: str, rate: bool) -> list[Any]:
        return [
            qid,
            now_ms(),
            int(self.settings.webhook_breaker_probe * 1000),
            self.settings.webhook_host_rps if rate else 0,
            MAX_SLEEP_MS,
            host,
            BREAKER_OPEN,
            RATE_HELD,
        ]

    def head_keys_args(
        self, url: str, qid: str, claim: Claim, list_key: str, marked: str
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of `admit_head` for the head of `claim`'s queue (to `url`), which the
        script before it marks in flight with `marked`."""
        host = host_key(url)
        return (
            [*self._admit_keys(host, ""), list_key, self.schedule.lease_key],
            [*self._admit_args(qid, host, True), claim.member, claim.token, keys.delivery(""),
             marked],
        )  # fmt: skip

    @staticmethod
    def admission(raw: list[Any]) -> Admission | None:
        """What host_admit.lua answered (None: `admit_head` asked nothing)."""
        if int(raw[0]) == 2:
            return None
        if int(raw[0]) == 0:
            why = raw[2].decode() if isinstance(raw[2], bytes) else str(raw[2])
            HELD.labels(why).inc()
            return Admission(False, until_ms=int(raw[1]), why=why)
        return Admission(True, int(raw[1]) / 1000, bool(int(raw[2])), int(raw[3]))

    async def admit(self, delivery_id: str, url: str, qid: str, *, rate: bool = True) -> Admission:
        """Ask to attempt `delivery_id` now; a hold is written on its record for the log.

        `rate=False` asks the breaker alone (after sleeping for a rate slot already reserved)."""
        host = host_key(url)
        raw = await self.batch.call(
            self._admit,
            self._admit_keys(host, keys.delivery(delivery_id)),
            self._admit_args(qid, host, rate),
        )
        admission = self.admission(raw)
        assert admission is not None
        return admission

    async def gate(
        self, delivery_id: str, url: str, qid: str, asked: Admission | None = None
    ) -> Admission | Held:
        """Admit an attempt (`asked`: the answer `admit_head` gave already), sleeping for a
        near rate slot; Held when it must wait longer."""
        admission = asked or await self.admit(delivery_id, url, qid)
        if admission.go and admission.wait_s > 0:
            await asyncio.sleep(admission.wait_s)
            if not admission.probe:
                # The breaker may have opened during the wait: ask it again, not the rate.
                admission = await self.admit(delivery_id, url, qid, rate=False)
        if not admission.go:
            return Held(admission.until_ms, admission.why)
        return admission

    async def observe(self, url: str, result: AttemptResult, admission: Admission) -> None:
        """Count an attempt's result against its host; skipped when it changes nothing."""
        failed = host_failed(result)
        retry_after = result.retry_after if result.status in (429, 503) else None
        if result.permanent or (
            not failed and admission.failures == 0 and not admission.probe and retry_after is None
        ):
            return
        host = host_key(url)
        moved = await self.batch.call(
            self._observe,
            [
                keys.host(host),
                keys.host_waiting(host),
                keys.HOSTS_OPEN,
                self.schedule.due_key,
                self.schedule.lease_key,
                self.schedule.wake_key,
            ],
            [
                "fail" if failed else "ok",
                now_ms(),
                self.settings.webhook_breaker_failures,
                int(self.settings.webhook_breaker_probe * 1000),
                -1 if retry_after is None else retry_after,
                self.settings.webhook_host_rps,
                host,
                SLOW_FLOOR_RPS,
                SLOW_MIN_MS,
            ],
        )
        if int(moved) == 1:
            BREAKER_TRANSITIONS.labels("open").inc()
        elif int(moved) == 2:
            BREAKER_TRANSITIONS.labels("closed").inc()


async def list_hosts(
    redis: Redis, settings: Settings, *, limit: int = 50, offset: int = 0
) -> tuple[list[HostView], int]:
    """Hosts by most recent attempt, one page, and how many there are."""
    total = int(await redis.zcard(keys.HOSTS))
    names = await redis.zrevrange(keys.HOSTS, offset, offset + limit - 1, withscores=True)
    async with redis.pipeline(transaction=False) as pipe:
        for name, _ in names:
            pipe.hgetall(keys.host(name))
            pipe.zcard(keys.host_waiting(name))
        raw = await pipe.execute()
    now = now_ms()
    views = []
    for i, (name, last) in enumerate(names):
        rec, waiting = raw[2 * i], int(raw[2 * i + 1])
        rps = settings.webhook_host_rps
        lowered = None
        if rec.get("slow_rps") and float(rec.get("slow_until", 0)) > now and rps > 0:
            rps = min(rps, float(rec["slow_rps"]))
            lowered = float(rec["slow_until"]) / 1000
        probe = float(rec["probe_at"]) / 1000 if rec.get("probe_at") else None
        views.append(
            HostView(
                name,
                rec.get("state", "closed"),
                int(rec.get("failures", 0)),
                waiting,
                rps,
                lowered,
                float(last) / 1000,
                probe,
            )
        )
    return views, total


async def open_hosts(redis: Redis) -> list[str]:
    """The hosts whose breaker is open now."""
    return sorted(await redis.smembers(keys.HOSTS_OPEN))


async def forget_idle_hosts(redis: Redis, before_ms: int, limit: int = 1000) -> int:
    """Drop what is kept about hosts with no attempt since `before_ms` (a host that still has
    waiting deliveries is asked about every probe interval, so it is never idle this long)."""
    names = await redis.zrangebyscore(keys.HOSTS, "-inf", f"({before_ms}", 0, limit)
    if names:
        async with redis.pipeline(transaction=True) as pipe:
            for name in names:
                pipe.delete(keys.host(name), keys.host_waiting(name), keys.host_tat(name))
                pipe.srem(keys.HOSTS_OPEN, name)
            pipe.zrem(keys.HOSTS, *names)
            await pipe.execute()
    return len(names)
