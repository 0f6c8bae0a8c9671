"""The webhook delivery engine: durable, ordered per (room, URL), retried, dead-lettered.

Emitting an event writes its body once (in its delivery's record when it has one target URL, else
in a key both records share) and one delivery record per target URL, and appends each
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
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from worker import __version__, keys, lua
from worker.batching import batcher
from worker.logs import get_logger
from worker.metrics import ATTEMPTS, child
from worker.queue.schedule import Claim, Schedule, now_ms
from worker.settings import Settings
from worker.webhooks.attempt import (
    AttemptResult,
    Failed,
    Gone,
    Outcome,
    RetryLater,
    decide,
    jittered,
    send,
)
from worker.webhooks.bodies import wants
from worker.webhooks.delivery import Delivery, mark_inflight, new_cmds, queue_id
from worker.webhooks.heads import (
    BODY_EXPIRED,
    GONE_EARLIER,
    INTERRUPTED,
    Final,
    Head,
    Transition,
    account,
    entry,
    final_state,
    head_of,
    observe,
)
from worker.webhooks.hosts import Admission, Held, HostGuard
from worker.webhooks.http1 import Pool
from worker.webhooks.pruning import Pruner, retention_s
from worker.webhooks.pruning import id_floor as id_floor  # re-exported: ids are made here
from worker.webhooks.signing import Signer
from worker.webhooks.stored import pack_body, unpack_body

log = get_logger("roomkeeper.dispatch")

SCHEDULE_NAME = keys.DELIVERY_QUEUES
USER_AGENT = f"roomkeeper/{__version__}"
STATES = ("pending", "delivered", "dead")
ID_PATTERN = re.compile(r"dlv_[0-9a-f]{20}")
# A lease outlives the longest attempt by this much, so only a dead consumer loses one.
LEASE_MARGIN_S = 5.0
URLS_KEPT = 10_000  # queues whose URL a dispatcher remembers


def new_delivery_id() -> str:
    """Time-ordered ids (fixed-width hex microseconds), so a lexical index is a time index."""
    return f"{id_floor(time.time())}{secrets.token_hex(3)}"


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
        self, room_url: str | None, event: str = "", events: str | None = None
    ) -> list[str]:
        """The room's own URL and the global one, each once, as far as their filters take it."""
        urls = [room_url] if room_url and wants(event, events) else []
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
        wake: bool = True,
        room_events: str | None = None,
    ) -> list[str]:
        """Queue `body` for every target on `pipe` (`room_events`: the room's filter); returns
        the delivery ids (`wake=False`: the caller wakes the schedule once for many events)."""
        urls = self.targets(room_webhook_url, event, room_events)
        if not urls:
            return []
        ttl = record_ttl_s(self.settings)
        schedule = self.settings.webhook_retry_schedule
        packed = pack_body(body)
        # One target: the body goes in its record, one key fewer for the retention period.
        inline = packed if len(urls) == 1 else None
        if inline is None:
            pipe.set(keys.event_body(event_id), packed, ex=ttl)
        first_at = now_ms() + int(jittered(schedule[0], self.settings.webhook_jitter) * 1000)
        ids = []
        for url in urls:
            did = new_delivery_id()
            qid = queue_id(room_id, url)
            delivery = Delivery(did, event_id, event, room_id, url, qid, created=time.time())
            new_cmds(pipe, delivery, ttl, body=inline)
            self.schedule.push(pipe, qid, did, first_at, wake=False)
            ids.append(did)
        if wake:
            self.schedule.wake(pipe)
        return ids


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
        pool: Pool,
        schedule: Schedule | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.pool = pool
        self.schedule = schedule or delivery_schedule(redis, settings)
        # The script calls of concurrent queues go to Redis together (see `worker.batching`).
        self.batch = batcher(redis)
        self._peek_script = lua.script(redis, "worker.webhooks", "peek")
        self._settle_script = lua.script(redis, "worker.webhooks", "settle")
        self.pruner = Pruner(redis, settings)
        self.hosts = HostGuard(redis, settings, self.schedule)
        # Settle, pop and read the next head, then ask its host about it: one round trip; a
        # claim's first head likewise, once this process knows the queue's URL.
        self._advance_script = lua.chained(
            redis, ("worker.webhooks", "advance"), self.hosts.admit_head
        )
        self._peek_admit = lua.chained(redis, ("worker.webhooks", "peek"), self.hosts.admit_head)
        self._urls: dict[str, str] = {}  # queue -> its URL (the queue id hashes the URL)
        self.signer = Signer(
            api_key=settings.api_key,
            api_secret=settings.api_secret.get_secret_value(),
            keys=settings.webhook_secrets,
            user_agent=USER_AGENT,
        )

    async def work(self, claim: Claim) -> None:
        """Deliver from one queue until it is empty or must wait for a retry."""
        uncounted: list[Transition] = []  # settled heads, counted during the next round trip
        try:
            await self._work_queue(claim, uncounted)
        finally:
            account(uncounted)
            # After the queue is given back, so pruning never holds a room's events up.
            await self.pruner.maybe_turn()

    async def _work_queue(self, claim: Claim, uncounted: list[Transition]) -> None:
        qid = claim.member
        head, asked = await self._peek(claim)
        while head is not None:
            step = await self._deliver(qid, head, asked)
            if isinstance(step, RetryLater | Held):
                # The whole queue waits (a retry, or its host's breaker or rate, which cost no
                # attempt), so nothing behind this delivery overtakes it.
                at = step.until_ms if isinstance(step, Held) else now_ms() + int(step.after * 1000)
                await self.schedule.release(claim, at)
                return
            # Delivered, dead (a 410 included: what follows is dead-lettered in turn) or
            # skipped: settled, popped and the next head read in one round trip.
            held, head, asked = await self._advance(claim, head, step, uncounted)
            if not held or head is None:
                # The lease was lost (whoever holds it now goes on), or the queue is empty and
                # was given back by the same script.
                return
        await self.schedule.release(claim)

    async def _peek(self, claim: Claim) -> tuple[Head | None, Admission | None]:
        """The head delivery of a queue, read (and marked in flight) in one round trip, with
        its host's answer when this process knows the queue's URL (else None)."""
        qid, now = claim.member, f"{time.time():.6f}"
        peek_keys = [self.schedule.list_key(qid), keys.gone(qid)]
        peek_args = [keys.delivery(""), keys.event_body(""), now, keys.webhook_url("")]
        url, asked = self._urls.get(qid), None
        if url is None:
            raw = await self.batch.call(self._peek_script, peek_keys, peek_args)
        else:
            admit_keys, admit_args = self.hosts.head_keys_args(
                url, qid, claim, self.schedule.list_key(qid), now
            )
            both = await self.batch.call(
                self._peek_admit,
                [*peek_keys, *admit_keys],
                [len(peek_keys), len(peek_args), *peek_args, *admit_args],
            )
            raw, asked = both[0], self.hosts.admission(both[1])
        head = head_of(raw) if raw else None
        if url is None and head is not None and head.record.get("url"):
            if len(self._urls) >= URLS_KEPT:
                del self._urls[next(iter(self._urls))]  # the longest known
            self._urls[qid] = head.record["url"]
        return head, asked

    async def _advance(
        self, claim: Claim, head: Head, step: Final | None, uncounted: list[Transition]
    ) -> tuple[bool, Head | None, Admission | None]:
        """Settle a finished head (if `step`), pop it and read the next: (whether the lease
        still holds, the next head or None when the queue is empty, then released, and what
        its host said about attempting it, None if not asked); the head joins `uncounted`."""
        did, qid = head.delivery_id, claim.member
        ttl = record_ttl_s(self.settings)
        state = reason = logged = ""
        if step is not None:
            state, reason = final_state(step.outcome)
            if step.result is not None:
                logged = entry(step.result, step.began)
        now = f"{time.time():.6f}"
        advance_keys = [
            keys.delivery(did),
            keys.DELIVERY_COUNTS,
            keys.deliveries_in_state("pending"),
            keys.deliveries_in_state("dead"),
            keys.gone(qid),
            self.schedule.due_key,
            self.schedule.lease_key,
            self.schedule.list_key(qid),
        ]
        advance_args = [
            did,
            logged,
            "",  # a finished record keeps no attempt count
            state,
            reason,
            now,
            ttl,
            ttl if step is not None and isinstance(step.outcome, Gone) else "",
            qid,
            claim.token,
            now_ms() + self.schedule.lease_ms,
            keys.delivery(""),
            keys.event_body(""),
            keys.webhook_url(""),
        ]
        # The queue's URL, from this head's record; a record pruned meanwhile has none, and
        # its next head is then asked about on its own (a mark of "" matches none).
        url = head.record.get("url", "")
        admit_keys, admit_args = self.hosts.head_keys_args(
            url, qid, claim, self.schedule.list_key(qid), now if url else ""
        )
        if uncounted or (step is not None and step.result is not None):
            # Logged and counted while Redis runs the script: queued now, this runs once the
            # call is written (nothing before the write yields), costing the queue no time
            # (after the answer it would not: it would run before the next POST is written).
            asyncio.get_running_loop().call_soon(account, uncounted[:], head, step)
            uncounted.clear()
        both = await self.batch.call(
            self._advance_script,
            [*advance_keys, *admit_keys],
            [len(advance_keys), len(advance_args), *advance_args, *admit_args],
        )
        raw, asked = both[0], self.hosts.admission(both[1])
        if step is not None:
            uncounted.append(Transition(did, head.record, step.outcome, raw[0]))
        if int(raw[1]) < 0:
            return False, None, None
        return True, (head_of(raw[2:]) if int(raw[1]) == 1 else None), asked

    async def _deliver(
        self, qid: str, head: Head, asked: Admission | None = None
    ) -> Final | RetryLater | Held | None:
        """Attempt the head delivery of a queue: a final outcome to settle, a retry (settled
        already), or None when it was already finished (`asked`: its host's answer, when the
        read of the head asked it already)."""
        did, record = head.delivery_id, head.record
        if record.get("state") != "pending":
            return None  # finished by a consumer that died before popping it, or pruned
        if head.gone:
            return Final(Failed(GONE_EARLIER), None, None, time.time())
        if head.body is None:
            return Final(Failed(BODY_EXPIRED), None, None, time.time())
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
            child(ATTEMPTS, "interrupted").inc()
            if isinstance(verdict, Failed):
                return Final(verdict, lost, attempt, began)
            await self._settle(did, record, lost, attempt, verdict, began)
            # Settling cleared the in-flight mark the peek set for the attempt about to go out.
            await mark_inflight(self.redis, did)
            if asked is not None and not asked.go:
                asked = None  # its hold cleared a mark set again just now: ask again
        admission = await self.hosts.gate(did, record["url"], qid, asked)
        if isinstance(admission, Held):
            return admission
        attempt += 1
        raw = unpack_body(head.body)
        stamp = int(time.time())
        headers = self.signer.headers(body=raw, msg_id=record["event_id"], now=stamp)
        began = time.time()
        result = await send(
            self.pool, record["url"], raw, headers, timeout=self.settings.webhook_timeout
        )
        outcome = decide(result, attempt, schedule, jitter)
        # Counted with its log line (`log_attempt`), off the way to settling it.
        await self.hosts.observe(record["url"], result, admission)
        if isinstance(outcome, RetryLater):
            await self._settle(did, record, result, attempt, outcome, began)
            return outcome
        return Final(outcome, result, attempt, began)

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
        if isinstance(outcome, RetryLater):
            if result is not None and result.error != INTERRUPTED:
                next_at = f"{time.time() + outcome.after:.3f}"
        else:
            state, reason = final_state(outcome)
        ttl = record_ttl_s(self.settings)
        moved = await self.batch.call(
            self._settle_script,
            [
                keys.delivery(did),
                keys.DELIVERY_COUNTS,
                keys.deliveries_in_state("pending"),
                keys.deliveries_in_state("dead"),
                keys.gone(record["queue"]),
            ],
            [
                did,
                entry(result, began) if result is not None else "",
                "" if attempt is None else attempt,
                state,
                reason,
                next_at,
                f"{time.time():.6f}",
                ttl,
                ttl if isinstance(outcome, Gone) else "",
            ],
        )
        observe(did, record, result, attempt, outcome, moved)

    async def prune(self, before: float, batch: int = 500, limit: int | None = None) -> int:
        """Remove finished deliveries created before `before` (see `Pruner.prune`)."""
        return await self.pruner.prune(before, batch, limit)
