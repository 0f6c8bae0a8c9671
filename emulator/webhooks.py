"""Signed webhook delivery with LiveKit's queueing and retry rules.

Follows livekit/protocol webhook.ResourceURLNotifier:

* one FIFO queue per (room, URL), with at most one request in flight per queue, so events of
  a room reach each URL in order while different rooms never block each other;
* an event is dropped when its queue already holds ``webhook_max_depth`` (200) events, or
  when it waited longer than ``webhook_max_age`` (30 s) before its turn came;
* up to ``webhook_max_attempts`` (5) attempts on a connection error, 429 or a 5xx other than
  501 (go-retryablehttp's DefaultRetryPolicy), with exponential backoff; nothing persists.

The body is protojson (camelCase, int64 as strings) rendered once, when the event happens;
the exact bytes are signed and sent, and kept for inspection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from google.protobuf import json_format
from livekit.protocol import egress as egress_pb
from livekit.protocol import models, webhook

from .auth import webhook_token
from .config import EmulatorConfig
from .state import new_sid

log = logging.getLogger("emulator.webhooks")

CONTENT_TYPE = "application/webhook+json"
USER_AGENT = "LiveKit"
_TRACK_EVENTS = frozenset({"track_published", "track_unpublished"})


def render_event(
    event: str,
    room: models.Room,
    participant: models.ParticipantInfo | None = None,
    track: models.TrackInfo | None = None,
    end_reason: int = 0,
) -> tuple[str, str, int]:
    """Build and serialise a WebhookEvent now; returns ``(body, event_id, created_at)``."""
    created_at = int(time.time())
    msg = webhook.WebhookEvent(event=event, id=new_sid("EV_"), created_at=created_at)
    if event in _TRACK_EVENTS:
        # LiveKit sends track events with a minimal room: just sid and name.
        msg.room.sid = room.sid
        msg.room.name = room.name
    else:
        msg.room.CopyFrom(room)
    if participant is not None:
        msg.participant.CopyFrom(participant)
    if track is not None:
        msg.track.CopyFrom(track)
    if end_reason:
        msg.room_end_reason = end_reason  # type: ignore[assignment]
    # Compact separators like Go's protojson; ensure_ascii=False keeps UTF-8 as UTF-8.
    body = json.dumps(json_format.MessageToDict(msg), separators=(",", ":"), ensure_ascii=False)
    return body, msg.id, created_at


def render_egress_event(event: str, info: egress_pb.EgressInfo) -> tuple[str, str]:
    """An egress WebhookEvent (``egressInfo``, no room) serialised now; ``(body, event_id)``."""
    msg = webhook.WebhookEvent(event=event, id=new_sid("EV_"), created_at=int(time.time()))
    msg.egress_info.CopyFrom(info)
    body = json.dumps(json_format.MessageToDict(msg), separators=(",", ":"), ensure_ascii=False)
    return body, msg.id


class WebhookRecord:
    """One event addressed to one URL, as shown by ``GET /_emulator/webhooks``."""

    __slots__ = (
        "at",
        "attempts",
        "body",
        "delivered",
        "dropped",
        "event",
        "id",
        "queue",
        "queued_at",
        "room",
        "status",
        "url",
    )

    def __init__(
        self, url: str, event: str, event_id: str, room: str, body: str, queue: str = ""
    ) -> None:
        self.url = url
        self.event = event
        self.id = event_id
        self.room = room
        self.body = body
        # Which FIFO the event waits in: its room's, or (egress events) its egress id's.
        self.queue = queue or room
        self.attempts = 0
        self.status: int | None = None
        self.delivered = False
        self.dropped = False
        self.at = time.time()
        # Monotonic, for the max-age rule; wall-clock ``at`` is for humans.
        self.queued_at = time.monotonic()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "url": self.url,
            "event": self.event,
            "id": self.id,
            "room": self.room,
            "body": self.body,
            "attempts": self.attempts,
            "status": self.status,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "at": self.at,
        }


@dataclass(slots=True)
class WebhookCounters:
    """Totals reported by ``/_emulator/stats``."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0


class _Queue:
    __slots__ = ("items", "task")

    def __init__(self) -> None:
        self.items: deque[WebhookRecord] = deque()
        self.task: asyncio.Task[None] | None = None


def _retryable(status: int) -> bool:
    # go-retryablehttp: 429 and every 5xx except 501 Not Implemented.
    return status == 429 or (status >= 500 and status != 501)


class WebhookSender:
    """The :class:`~emulator.state.EventSink` that signs, queues and delivers webhooks."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.records: deque[WebhookRecord] = deque(maxlen=config.max_records)
        self.counters = WebhookCounters()
        self._queues: dict[tuple[str, str], _Queue] = {}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Open the HTTP client; call inside the running loop."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256),
                headers={"User-Agent": USER_AGENT},
            )

    async def stop(self) -> None:
        """Abandon pending deliveries (LiveKit keeps nothing either) and close the client."""
        await self._cancel_all()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def clear(self) -> None:
        """Drop queued deliveries, records and counters (the reset endpoint)."""
        await self._cancel_all()
        self.records.clear()
        self.counters = WebhookCounters()

    def clear_records(self) -> None:
        """Forget the inspection log only."""
        self.records.clear()

    def list_records(
        self, event: str | None = None, room: str | None = None
    ) -> Iterable[WebhookRecord]:
        """Records in the order events happened, optionally filtered."""
        for record in self.records:
            if event and record.event != event:
                continue
            if room and record.room != room:
                continue
            yield record

    async def _cancel_all(self) -> None:
        tasks = list(self._tasks)
        self._queues.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ------------------------------------------------------------- EventSink

    def emit(
        self,
        event: str,
        room: models.Room,
        participant: models.ParticipantInfo | None = None,
        track: models.TrackInfo | None = None,
        end_reason: int = 0,
    ) -> None:
        """Render the event once and queue it for every configured URL."""
        urls = self.config.webhook_urls
        if not urls:
            # No receiver configured: skip rendering entirely (the benchmark fast path).
            return
        body, event_id, _ = render_event(event, room, participant, track, end_reason)
        for url in urls:
            record = WebhookRecord(url, event, event_id, room.name, body)
            self.records.append(record)
            self._enqueue(record)

    def emit_egress(self, event: str, info: egress_pb.EgressInfo) -> None:
        """Queue an egress event per (egress id, URL), as LiveKit's egress service does."""
        urls = self.config.webhook_urls
        if not urls:
            return
        body, event_id = render_egress_event(event, info)
        for url in urls:
            record = WebhookRecord(url, event, event_id, info.room_name, body, info.egress_id)
            self.records.append(record)
            self._enqueue(record)

    def _enqueue(self, record: WebhookRecord) -> None:
        key = (record.queue, record.url)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue()
        if len(queue.items) >= self.config.webhook_max_depth:
            self._drop(record, "queue full")
            return
        queue.items.append(record)
        if queue.task is None:
            task = asyncio.get_running_loop().create_task(self._drain(key, queue))
            queue.task = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _drop(self, record: WebhookRecord, reason: str) -> None:
        record.dropped = True
        self.counters.dropped += 1
        if self.config.verbose:
            log.info("dropped webhook %s %s (%s)", record.event, record.url, reason)

    async def _drain(self, key: tuple[str, str], queue: _Queue) -> None:
        # One worker per (room, URL) queue: this is what keeps one request in flight per queue.
        try:
            while queue.items:
                record = queue.items.popleft()
                if time.monotonic() - record.queued_at > self.config.webhook_max_age:
                    self._drop(record, "age")
                    continue
                await self._deliver(record)
        finally:
            queue.task = None
            # Nothing can be appended between the loop's last check and here (no await), so
            # removing the empty queue cannot lose an event.
            if self._queues.get(key) is queue and not queue.items:
                del self._queues[key]

    async def _deliver(self, record: WebhookRecord) -> None:
        session = self._session
        if session is None:
            raise RuntimeError("WebhookSender.start() was not called")
        config = self.config
        data = record.body.encode()
        headers = {
            "Authorization": webhook_token(config.api_key, config.api_secret, data),
            "Content-Type": CONTENT_TYPE,
        }
        timeout = aiohttp.ClientTimeout(total=config.webhook_timeout)
        for attempt in range(1, config.webhook_max_attempts + 1):
            record.attempts = attempt
            retry = True
            try:
                async with session.post(
                    record.url, data=data, headers=headers, timeout=timeout
                ) as resp:
                    await resp.read()
                    record.status = resp.status
                    retry = _retryable(resp.status)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                if config.verbose:
                    log.info("webhook %s to %s failed: %r", record.event, record.url, exc)
            if not retry:
                break
            if attempt < config.webhook_max_attempts:
                delay = config.webhook_retry_backoff * (2 ** (attempt - 1))
                await asyncio.sleep(min(delay, config.webhook_retry_backoff_max))
        status = record.status
        record.delivered = status is not None and 200 <= status < 300 and not retry
        if record.delivered:
            self.counters.sent += 1
        else:
            self.counters.failed += 1
