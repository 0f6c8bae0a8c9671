"""The webhook delivery engine: durable, ordered per (room, URL), retried, dead-lettered.

Emitting an event writes its body once and one delivery record per target URL, and appends each
delivery to the FIFO of its (room, URL) queue on the `dq` schedule, all inside the caller's
transaction, so an event exists exactly when the state change that caused it does. The consumer
side works one queue at a time per lease: the head delivery is attempted; delivered or dead pops
it and the next follows; a retry puts the whole queue back on the schedule for later, so nothing
behind it overtakes it. Rooms are independent queues, so one dead endpoint delays nobody else.

All attempt state (count, log, next time, an attempt in flight) lives in our own keys, never in
arq's job keys, so a schedule of any length survives restarts; an attempt a crash cut short is
logged as interrupted and sent again (same `webhook-id`) once its lease runs out. Records are
kept for the retention period, then pruned by whichever worker takes the prune turn (every 10 min).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from redis.asyncio import Redis

from worker import __version__, keys, lua
from worker.logs import get_logger
from worker.metrics import ATTEMPT_SECONDS, ATTEMPTS, DELIVERIES, DELIVERY_SECONDS
from worker.queue.schedule import Claim, Schedule, now_ms
from worker.settings import Settings
from worker.webhooks.attempt import (
    AttemptResult,
    Delivered,
    Failed,
    Gone,
    Outcome,
    RetryLater,
    decide,
    jittered,
    send,
)
from worker.webhooks.delivery import Delivery, mark_inflight, new_cmds, url_hash
from worker.webhooks.hosts import Held, HostGuard
from worker.webhooks.signing import webhook_headers

log = get_logger("roomkeeper.dispatch")

SCHEDULE_NAME = keys.DELIVERY_QUEUES
USER_AGENT = f"roomkeeper/{__version__}"
STATES = ("pending", "delivered", "dead")
ID_PATTERN = re.compile(r"dlv_[0-9a-f]{20}")
# A lease outlives the longest attempt by this much, so only a dead consumer loses one.
LEASE_MARGIN_S = 5.0
PRUNE_EVERY_S = 600.0
PRUNE_MAX = 50_000  # records looked at per turn, so one turn stays short
PRUNE_LOCK = keys.DELIVERY_PRUNE_LOCK

GONE_REASON = (
    "receiver answered 410 Gone; later events of this room to this URL are dead until a redelivery"
)
GONE_EARLIER = (
    "not sent: this room's URL answered 410 Gone to an earlier event; redeliver to reopen"
)
BODY_EXPIRED = "not sent: the event body expired before delivery"
INTERRUPTED = "interrupted: the worker stopped before the receiver answered (it may have the event)"


def queue_id(room_id: str, url: str) -> str:
    """The (room, URL) queue a delivery belongs to (`|` never occurs in a room_id)."""
    return f"{room_id}|{url_hash(url)}"


def wants(event: str, events: tuple[str, ...] | str | None) -> bool:
    """Whether a target whose filter is `events` (a tuple, comma-joined, or none = all) takes it."""
    if not events:
        return True
    return event in (events.split(",") if isinstance(events, str) else events)


def new_delivery_id() -> str:
    """Time-ordered ids (fixed-width hex microseconds), so a lexical index is a time index."""
    return f"{id_floor(time.time())}{secrets.token_hex(3)}"


def id_floor(unix_s: float) -> str:
    """The lexical lower bound of the ids created at or after `unix_s`."""
    return f"dlv_{max(0, int(unix_s * 1_000_000)):014x}"


def public_url(url: str) -> str:
    """A URL fit for logs: no credentials, no query (webhook URLs often carry tokens)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}{parts.path}"


def retention_s(settings: Settings) -> int:
    """How long finished delivery records are kept."""
    return int(settings.webhook_retention_days * 86400)


def record_ttl_s(settings: Settings) -> int:
    """A safety-net TTL on records and bodies: retention plus the longest life of a pending one.

    The pruner removes records first (keeping the counts right); the TTL only matters when no
    worker has run for that long.
    """
    longest = sum(settings.webhook_retry_schedule) * 2 * (1 + settings.webhook_jitter)
    return retention_s(settings) + int(longest) + 86400


@dataclass(frozen=True)
class Outbox:
    """The producer side: which URLs an event goes to, and the commands that enqueue it."""

    settings: Settings
    schedule: Schedule

    def targets(
        self, room_webhook_url: str | None, event: str = "", room_events: str | None = None
    ) -> list[str]:
        """The room's own URL and the global one, each once, as far as their filters take it."""
        urls = []
        if room_webhook_url and wants(event, room_events):
            urls.append(room_webhook_url)
        if self.settings.webhook_url and wants(event, self.settings.webhook_events):
            urls.append(self.settings.webhook_url)
        return list(dict.fromkeys(urls))

    def emit(
        self,
        pipe: Any,
        *,
        event_id: str,
        event: str,
        room_id: str,
        body: bytes,
        room_webhook_url: str | None,
        room_events: str | None = None,
    ) -> list[str]:
        """Queue `body` for every target on `pipe`; returns the delivery ids.

        `room_events` is the room's filter (comma-joined event names, none = every event)."""
        urls = self.targets(room_webhook_url, event, room_events)
        if not urls:
            return []
        ttl = record_ttl_s(self.settings)
        schedule = self.settings.webhook_retry_schedule
        pipe.set(keys.event_body(event_id), body, ex=ttl)
        first_at = now_ms() + int(jittered(schedule[0], self.settings.webhook_jitter) * 1000)
        ids = []
        for url in urls:
            did = new_delivery_id()
            qid = queue_id(room_id, url)
            delivery = Delivery(did, event_id, event, room_id, url, qid, created=time.time())
            new_cmds(pipe, delivery, ttl)
            self.schedule.push(pipe, qid, did, first_at)
            ids.append(did)
        return ids


@dataclass(frozen=True)
class Head:
    """The delivery at the head of a queue, as `peek.lua` read it."""

    delivery_id: str
    record: dict[str, str]
    gone: bool
    body: str | None


def delivery_schedule(redis: Redis, settings: Settings) -> Schedule:
    """The `dq` schedule of (room, URL) queues, its lease outliving the longest attempt."""
    lease_ms = int((settings.webhook_timeout + LEASE_MARGIN_S) * 1000)
    return Schedule(redis, SCHEDULE_NAME, lease_ms=lease_ms)


class Dispatcher:
    """The consumer side: works due (room, URL) queues, one delivery at a time each."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        session: aiohttp.ClientSession,
        schedule: Schedule | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.session = session
        self.schedule = schedule or delivery_schedule(redis, settings)
        self._peek_script = lua.script(redis, "worker.webhooks", "peek")
        self._settle_script = lua.script(redis, "worker.webhooks", "settle")
        self._prune_script = lua.script(redis, "worker.webhooks", "prune")
        self._next_prune = 0.0
        self.hosts = HostGuard(redis, settings, self.schedule)

    async def work(self, claim: Claim) -> None:
        """Deliver from one queue until it is empty or must wait for a retry."""
        try:
            await self._work_queue(claim)
        finally:
            # After the queue is given back, so pruning never holds a room's events up.
            if time.monotonic() >= self._next_prune:
                self._next_prune = time.monotonic() + PRUNE_EVERY_S
                await self._prune_turn()

    async def _work_queue(self, claim: Claim) -> None:
        qid = claim.member
        while True:
            head = await self._peek(qid)
            if head is None:
                await self.schedule.release(claim)
                return
            outcome = await self._deliver(qid, head)
            if isinstance(outcome, RetryLater):
                # The whole queue waits, so nothing behind this delivery overtakes it.
                await self.schedule.release(claim, now_ms() + int(outcome.after * 1000))
                return
            if isinstance(outcome, Held):  # its host's breaker or rate: no attempt used
                await self.schedule.release(claim, outcome.until_ms)
                return
            # Delivered, dead (a 410 included: what follows is dead-lettered in turn) or skipped.
            if await self.schedule.pop(claim, head.delivery_id) < 0:
                return  # the lease was lost; whoever holds it now goes on

    async def _peek(self, qid: str) -> Head | None:
        """The head delivery of a queue, read (and marked in flight) in one round trip."""
        raw = await self._peek_script(
            keys=[self.schedule.list_key(qid), keys.gone(qid)],
            args=[keys.delivery(""), keys.event_body(""), f"{time.time():.6f}"],
        )
        if not raw:
            return None
        flat = raw[1]
        record = dict(zip(flat[::2], flat[1::2], strict=True))
        gone = len(raw) > 2 and int(raw[2]) == 1
        return Head(raw[0], record, gone, raw[3] if len(raw) > 3 else None)

    async def _deliver(self, qid: str, head: Head) -> Outcome | Held | None:
        """Attempt the head delivery of a queue; None when it was already finished."""
        did, record = head.delivery_id, head.record
        if record.get("state") != "pending":
            return None  # finished by a consumer that died before popping it, or pruned
        if head.gone:
            return await self._give_up(did, record, GONE_EARLIER)
        if head.body is None:
            return await self._give_up(did, record, BODY_EXPIRED)
        schedule = self.settings.webhook_retry_schedule
        jitter = self.settings.webhook_jitter
        attempt = int(record.get("attempts", 0))
        if "inflight" in record:
            # The previous attempt never finished: it counts, and (attempts remaining) the next
            # one goes now, since the expired lease has already made it wait.
            attempt += 1
            began = float(record["inflight"])
            lost = AttemptResult(None, INTERRUPTED, (time.time() - began) * 1000, "")
            verdict = decide(lost, attempt, schedule, jitter)
            ATTEMPTS.labels("interrupted").inc()
            await self._settle(did, record, lost, attempt, verdict, began)
            if isinstance(verdict, Failed):
                return verdict
            # Settling cleared the in-flight mark the peek set for the attempt about to go out.
            await mark_inflight(self.redis, did)
        admission = await self.hosts.admit(did, record["url"], qid)
        if not admission.go:
            return Held(admission.until_ms, admission.why)
        if admission.wait_s > 0:
            await asyncio.sleep(admission.wait_s)
            if not admission.probe:
                # The breaker may have opened during the wait: ask it again, not the rate.
                admission = await self.hosts.admit(did, record["url"], qid, rate=False)
                if not admission.go:
                    return Held(admission.until_ms, admission.why)
        attempt += 1
        raw = head.body.encode()
        stamp = int(time.time())
        headers = webhook_headers(
            body=raw,
            msg_id=record["event_id"],
            now=stamp,
            api_key=self.settings.api_key,
            api_secret=self.settings.api_secret.get_secret_value(),
            keys=self.settings.webhook_secrets,
            user_agent=USER_AGENT,
        )
        began = time.time()
        result = await send(
            self.session, record["url"], raw, headers, timeout=self.settings.webhook_timeout
        )
        outcome = decide(result, attempt, schedule, jitter)
        await self.hosts.observe(record["url"], result, admission)
        ATTEMPTS.labels(result.label).inc()
        ATTEMPT_SECONDS.observe(result.duration_ms / 1000)
        await self._settle(did, record, result, attempt, outcome, began)
        return outcome

    async def _give_up(self, did: str, record: dict[str, str], reason: str) -> Failed:
        """Dead-letter a delivery without an attempt."""
        outcome = Failed(reason)
        await self._settle(did, record, None, None, outcome, time.time())
        return outcome

    async def _settle(
        self,
        did: str,
        record: dict[str, str],
        result: AttemptResult | None,
        attempt: int | None,
        outcome: Outcome,
        began: float,
    ) -> None:
        """Log the attempt and apply its outcome in one step; count and log the transition."""
        state, reason, next_at = "pending", "", ""
        if isinstance(outcome, Delivered):
            state = "delivered"
        elif isinstance(outcome, Failed):
            state, reason = "dead", outcome.reason
        elif isinstance(outcome, Gone):
            state, reason = "dead", GONE_REASON
        elif result is not None and result.error != INTERRUPTED:
            next_at = f"{time.time() + outcome.after:.3f}"
        ttl = record_ttl_s(self.settings)
        moved = await self._settle_script(
            keys=[
                keys.delivery(did),
                keys.delivery_attempts(did),
                keys.DELIVERY_COUNTS,
                keys.deliveries_in_state("pending"),
                keys.deliveries_in_state("dead"),
                keys.gone(record["queue"]),
            ],
            args=[
                did,
                json.dumps(result.as_record(began)) if result is not None else "",
                "" if attempt is None else attempt,
                state,
                reason,
                next_at,
                f"{time.time():.6f}",
                ttl,
                ttl if isinstance(outcome, Gone) else "",
            ],
        )
        fields = {
            "delivery_id": did,
            "event_id": record.get("event_id"),
            "webhook_event": record.get("event"),
            "room_id": record.get("room_id"),
            "url": public_url(record.get("url", "")),
        }
        if result is not None:
            log.info(
                "webhook attempt",
                **fields,
                attempt=attempt,
                status=result.status,
                error=result.error,
                duration_ms=round(result.duration_ms, 1),
                outcome=type(outcome).__name__,
            )
        if int(moved) != 1 or state == "pending":
            return
        DELIVERIES.labels(state).inc()
        if state == "delivered":
            DELIVERY_SECONDS.observe(max(0.0, time.time() - float(record.get("created", 0))))
        else:
            log.warning("webhook dead", **fields, reason=reason)

    async def _prune_turn(self) -> None:
        """Prune, if no other worker has this turn (one per PRUNE_EVERY_S across the cluster)."""
        try:
            if await self.redis.set(PRUNE_LOCK, "1", nx=True, ex=int(PRUNE_EVERY_S * 0.9)):
                before = time.time() - retention_s(self.settings)
                removed = await self.prune(before, limit=PRUNE_MAX)
                if removed:
                    log.info("webhook deliveries pruned", removed=removed)
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
                    pipe.hmget(keys.delivery(did), "room_id", "url")
                rooms = await pipe.execute()
            async with self.redis.pipeline(transaction=False) as pipe:
                for did, (room, url) in zip(ids, rooms, strict=True):
                    await self._prune_script(
                        keys=[
                            keys.delivery(did),
                            keys.delivery_attempts(did),
                            keys.DELIVERIES,
                            keys.deliveries_by_room(room or ""),
                            keys.deliveries_in_state("pending"),
                            keys.deliveries_in_state("dead"),
                            keys.DELIVERY_COUNTS,
                            keys.deliveries_by_url(url_hash(url or "")),
                        ],
                        args=[did],
                        client=pipe,
                    )
                results = await pipe.execute()
            removed += sum(1 for r in results if int(r) > 0)
            lower = f"({ids[-1]}"
        return removed
