"""The API's side of LiveKit's events: verified events filed on their rooms' FIFOs, once each.

Each event is one `accept_event.lua` call (deduplicated by LiveKit's `id`); the calls of the
requests in flight at once share a round trip (`worker.batching`), each still with its own
answer, after Redis holds it.
"""

from __future__ import annotations

import base64

from livekit import api

from worker import batching, keys, lua
from worker.queue.schedule import Schedule, now_ms
from worker.webhooks.stored import pack_body

SEEN_TTL = 86400
# Serialized events from this size on are kept deflated (see `encode_event`).
DEFLATE_FROM = 256


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
    """File verified events for the workers; the accepts of requests in flight at once share a
    pipeline (`worker.batching`)."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self._accept = lua.script(schedule.redis, "worker.rooms", "accept_event")
        self._batcher = batching.batcher(schedule.redis)

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
        return bool(await self._batcher.call(self._accept, filing_keys, args))
