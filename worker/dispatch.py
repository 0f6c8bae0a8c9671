"""The webhook delivery engine: durable, ordered per (room, URL), retried, dead-lettered.

Emitting an event writes its body once and one delivery per target URL, and appends each delivery
to the FIFO of its (room, URL) queue on the `dq` schedule, all inside the caller's transaction, so
an event exists exactly when the state change that caused it does. The consumer side works one
queue at a time per lease: the head delivery is attempted; delivered or dead pops it and the next
follows; a retry puts the whole queue back on the schedule for later, so nothing behind it
overtakes it. Rooms are independent queues, so one dead endpoint delays nobody else.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from redis.asyncio import Redis

from worker import __version__, keys
from worker.delivery import Delivered, Failed, Gone, RetryLater, decide, send
from worker.logs import get_logger
from worker.metrics import ATTEMPT_SECONDS, ATTEMPTS, DELIVERIES
from worker.schedule import Claim, Schedule, now_ms
from worker.settings import Settings
from worker.signing import webhook_headers

log = get_logger("roomkeeper.dispatch")

SCHEDULE_NAME = "dq"
USER_AGENT = f"roomkeeper/{__version__}"
STATES = ("pending", "delivered", "dead")


def queue_id(room_id: str, url: str) -> str:
    """The (room, URL) queue a delivery belongs to."""
    return f"{room_id}|{hashlib.sha256(url.encode()).hexdigest()[:16]}"


def new_delivery_id() -> str:
    """Time-ordered ids (fixed-width hex microseconds), so a lexical index is a time index."""
    return f"dlv_{time.time_ns() // 1000:014x}{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Outbox:
    """The producer side: which URLs an event goes to, and the commands that enqueue it."""

    settings: Settings
    schedule: Schedule

    @property
    def retention_s(self) -> int:
        """How long delivery records and bodies are kept."""
        return int(self.settings.webhook_retention_days * 86400)

    def targets(self, room_webhook_url: str | None) -> list[str]:
        """The room's own URL and the global one, each once."""
        urls = [u for u in (room_webhook_url, self.settings.webhook_url) if u]
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
    ) -> list[str]:
        """Queue `body` for every target on `pipe`; returns the delivery ids."""
        urls = self.targets(room_webhook_url)
        if not urls:
            return []
        ttl = self.retention_s
        pipe.set(keys.event_body(event_id), body, ex=ttl)
        first_at = now_ms() + int(self.settings.webhook_retry_schedule[0] * 1000)
        ids = []
        for url in urls:
            did = new_delivery_id()
            qid = queue_id(room_id, url)
            pipe.hset(
                keys.delivery(did),
                mapping={
                    "event_id": event_id,
                    "event": event,
                    "room_id": room_id,
                    "url": url,
                    "queue": qid,
                    "state": "pending",
                    "attempts": 0,
                    "created": time.time(),
                },
            )
            pipe.expire(keys.delivery(did), ttl)
            pipe.zadd(keys.DELIVERIES, {did: 0})
            pipe.zadd(keys.deliveries_by_room(room_id), {did: 0})
            pipe.hincrby(keys.DELIVERY_COUNTS, "pending", 1)
            self.schedule.push(pipe, qid, did, first_at)
            ids.append(did)
        return ids


class Dispatcher:
    """The consumer side: works due (room, URL) queues, one delivery at a time each."""

    def __init__(self, redis: Redis, settings: Settings, session: aiohttp.ClientSession) -> None:
        self.redis = redis
        self.settings = settings
        self.session = session
        self.schedule = Schedule(redis, SCHEDULE_NAME)
        # A lease outlives the longest attempt, so only a dead consumer loses one.
        self.lease_ms = int((settings.webhook_timeout + 10) * 1000)

    async def work(self, claim: Claim) -> None:
        """Deliver from one queue until it is empty, must wait for a retry, or is stopped by 410."""
        qid = claim.member
        while True:
            did = await self.schedule.head(qid)
            if did is None:
                await self.schedule.release(claim)
                return
            record = await self.redis.hgetall(keys.delivery(did))
            if record.get("state") != "pending":
                # Already finished by a consumer that died before popping it, or expired.
                if await self.schedule.pop(claim, did, self.lease_ms) < 0:
                    return
                continue
            if await self.redis.exists(keys.gone(qid)):
                await self._finish(did, "dead", "receiver answered 410 Gone earlier; queue stopped")
                if await self.schedule.pop(claim, did, self.lease_ms) < 0:
                    return
                continue
            retry_at = await self._attempt(did, record)
            if retry_at == "gone":
                await self._stop_queue(claim, did)
                return
            if retry_at is not None:
                await self.schedule.release(claim, int(retry_at))
                return
            if await self.schedule.pop(claim, did, self.lease_ms) < 0:
                return

    async def _attempt(self, did: str, record: dict[str, str]) -> float | str | None:
        """One attempt; returns when to retry (ms), "gone", or None when the delivery is done."""
        body = await self.redis.get(keys.event_body(record["event_id"]))
        if body is None:
            await self._finish(did, "dead", "event body expired before delivery")
            return None
        raw = body.encode() if isinstance(body, str) else body
        now = int(time.time())
        headers = webhook_headers(
            body=raw,
            msg_id=record["event_id"],
            now=now,
            api_key=self.settings.api_key,
            api_secret=self.settings.api_secret.get_secret_value(),
            keys=self.settings.webhook_secrets,
            user_agent=USER_AGENT,
        )
        started = time.time()
        result = await send(
            self.session,
            record["url"],
            raw,
            headers,
            timeout=self.settings.webhook_timeout,
            allowed=self.settings.webhook_allowed_cidrs,
        )
        attempt = int(record.get("attempts", 0)) + 1
        outcome = decide(
            result, attempt, self.settings.webhook_retry_schedule, self.settings.webhook_jitter
        )
        ATTEMPT_SECONDS.observe(result.duration_ms / 1000)
        ATTEMPTS.labels(str(result.status) if result.status else "error").inc()
        entry = result.as_record(started)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(keys.delivery_attempts(did), json.dumps(entry))
            pipe.expire(
                keys.delivery_attempts(did), int(self.settings.webhook_retention_days * 86400)
            )
            pipe.hset(keys.delivery(did), "attempts", attempt)
            await pipe.execute()
        log.info(
            "webhook attempt",
            delivery_id=did,
            event_id=record["event_id"],
            webhook_event=record.get("event"),
            room_id=record.get("room_id"),
            url=record["url"],
            attempt=attempt,
            status=result.status,
            error=result.error,
            duration_ms=round(result.duration_ms, 1),
            outcome=type(outcome).__name__,
        )
        if isinstance(outcome, Delivered):
            await self._finish(did, "delivered")
            return None
        if isinstance(outcome, Failed):
            await self._finish(did, "dead", outcome.reason)
            return None
        if isinstance(outcome, Gone):
            return "gone"
        assert isinstance(outcome, RetryLater)
        retry_at = now_ms() + outcome.after * 1000
        await self.redis.hset(keys.delivery(did), "next_at", round(retry_at / 1000, 3))
        return retry_at

    async def _finish(self, did: str, state: str, reason: str | None = None) -> None:
        """Move a pending delivery to delivered/dead (counted once, before it is popped)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(keys.delivery(did))
            if await pipe.hget(keys.delivery(did), "state") != "pending":
                await pipe.reset()
                return
            pipe.multi()
            mapping: dict[str, Any] = {"state": state, "finished": time.time()}
            if reason:
                mapping["reason"] = reason
            pipe.hset(keys.delivery(did), mapping=mapping)
            pipe.hdel(keys.delivery(did), "next_at")
            pipe.hincrby(keys.DELIVERY_COUNTS, "pending", -1)
            pipe.hincrby(keys.DELIVERY_COUNTS, state, 1)
            await pipe.execute()
        DELIVERIES.labels(state).inc()

    async def _stop_queue(self, claim: Claim, did: str) -> None:
        """410: this delivery and everything queued behind it for the (room, URL) is dead."""
        qid = claim.member
        ttl = int(self.settings.webhook_retention_days * 86400)
        await self.redis.set(keys.gone(qid), 1, ex=ttl)
        await self._finish(did, "dead", "receiver answered 410 Gone")
        while (head := await self.schedule.head(qid)) is not None:
            await self._finish(head, "dead", "receiver answered 410 Gone; queue stopped")
            if await self.schedule.pop(claim, head, self.lease_ms) < 0:
                return
        await self.schedule.release(claim)


async def redeliver(redis: Redis, outbox: Outbox, delivery_ids: Iterable[str]) -> int:
    """Queue finished deliveries again (same event, same `webhook-id`); returns how many."""
    count = 0
    for did in delivery_ids:
        async with redis.pipeline(transaction=True) as pipe:
            await pipe.watch(keys.delivery(did))
            record = await pipe.hgetall(keys.delivery(did))
            if not record or record.get("state") == "pending":
                await pipe.reset()
                continue
            pipe.multi()
            pipe.hset(keys.delivery(did), mapping={"state": "pending", "attempts": 0})
            pipe.hdel(keys.delivery(did), "reason", "finished", "next_at")
            pipe.hincrby(keys.DELIVERY_COUNTS, record["state"], -1)
            pipe.hincrby(keys.DELIVERY_COUNTS, "pending", 1)
            pipe.delete(keys.gone(record["queue"]))
            outbox.schedule.push(pipe, record["queue"], did, now_ms())
            await pipe.execute()
            count += 1
    return count
