"""The API's side of LiveKit's events: verified events filed on their rooms' FIFOs, once each.

Each event is one `accept_event.lua` call (deduplicated by LiveKit's `id`). The calls of the
requests in flight at once share a round trip: the first waits for the current loop pass, so
every request that reached its accept meanwhile rides in the same pipeline, and while one
pipeline is out the next gathers. Each request still gets its own answer, after Redis holds it.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from livekit import api
from redis.exceptions import NoScriptError

from worker import keys, lua
from worker.queue.schedule import Schedule, now_ms
from worker.webhooks.stored import pack_body

SEEN_TTL = 86400
# Serialized events from this size on are kept deflated (see `encode_event`).
DEFLATE_FROM = 256
# The most events one pipeline files: a burst is cut into pipelines of this size.
PIPELINE_MAX = 256

_Filing = tuple[list[str], list[Any], "asyncio.Future[bool]"]


def encode_event(event: api.WebhookEvent) -> str:
    """How a verified event waits for the workers: the message the API parsed, as protobuf, so
    no worker parses its JSON a second time, as text (the schedule's lists hold text). One that
    carries its room's metadata is deflated as stored bodies are (the metadata, most of its
    bytes, is what their dictionary holds: about a quarter of the size while a busy worker lets
    events wait); a small one is only base64, since deflating with the dictionary costs far
    more than the few bytes it saves there."""
    raw = event.SerializeToString()
    if len(raw) < DEFLATE_FROM:
        return base64.b64encode(raw).decode("ascii")
    return pack_body(raw, level=1)


def room_of(event: api.WebhookEvent) -> str:
    """The room an event is about (egress events name it in `egressInfo`, not in `room`)."""
    return event.room.name or event.egress_info.room_name


class Inbox:
    """File verified events for the workers, many requests' events per round trip."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self._accept = lua.script(schedule.redis, "worker.rooms", "accept_event")
        self._waiting: list[_Filing] = []
        self._sending = False

    async def accept(self, event: api.WebhookEvent) -> bool:
        """File `event` on its room's FIFO; False when this event id was seen already."""
        room = room_of(event)
        filing_keys = [
            keys.lk_event_seen(event.id),
            self.schedule.due_key,
            self.schedule.list_key(room),
            self.schedule.wake_key,
        ]
        args = [SEEN_TTL, encode_event(event), now_ms(), room]
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((filing_keys, args, answer))
        if not self._sending:
            self._sending = True
            asyncio.get_running_loop().call_soon(self._send_waiting)
        return await asyncio.shield(answer)  # a request given up on is still filed

    def _send_waiting(self) -> None:
        batch, self._waiting = self._waiting[:PIPELINE_MAX], self._waiting[PIPELINE_MAX:]
        task = asyncio.ensure_future(self._file(batch))
        task.add_done_callback(self._sent)

    def _sent(self, _: asyncio.Future[None]) -> None:
        if self._waiting:
            self._send_waiting()
        else:
            self._sending = False

    async def _file(self, batch: list[_Filing]) -> None:
        """One pipeline for `batch`; each filing's answer (or the failure) to its request."""
        try:
            async with self.schedule.redis.pipeline(transaction=False) as pipe:
                for filing_keys, args, _ in batch:
                    pipe.evalsha(self._accept.sha, len(filing_keys), *filing_keys, *args)
                results = await pipe.execute(raise_on_error=False)
            for (filing_keys, args, answer), result in zip(batch, results, strict=True):
                if isinstance(result, NoScriptError):  # not loaded yet: this call loads it
                    result = await self._accept(keys=filing_keys, args=args)
                if answer.done():
                    continue
                if isinstance(result, Exception):
                    answer.set_exception(result)
                else:
                    answer.set_result(bool(result))
        except Exception as exc:  # Redis unreachable: every request of the batch fails with it
            for *_, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
