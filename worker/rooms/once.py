"""A room's own event, emitted at most once under a marker key (timers and retries may repeat)."""

from __future__ import annotations

from typing import Any

from redis.exceptions import WatchError

from worker import keys
from worker.deps import Deps
from worker.rooms.session import RoomSession

ONCE_TTL = 86400  # seconds a marker outlives its event; a repeat comes within minutes


async def emit_once(
    deps: Deps, session: RoomSession, room_id: str, event: str, event_id: str, body: Any
) -> None:
    """Emit `event` to the session's targets unless `event_id` was emitted already."""
    once = keys.once(event_id)
    async with deps.redis.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(once)
            if await pipe.exists(once):
                await pipe.reset()
                return
            pipe.multi()
            pipe.set(once, 1, ex=ONCE_TTL)
            deps.outbox.emit(
                pipe,
                event_id=event_id,
                event=event,
                room_id=room_id,
                body=body,
                room_webhook_url=session.webhook_url or None,
                room_events=session.webhook_events,
            )
            await pipe.execute()
        except WatchError:
            return
