"""The delivery log's read side and redelivery (`/auth/webhook/deliveries`, `/redeliver`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from worker import keys
from worker.keys import deliveries_in_state
from worker.queue.schedule import now_ms
from worker.webhooks.delivery import FINISHED, Delivery, reopen_cmds
from worker.webhooks.engine import Outbox, id_floor, record_ttl_s


@dataclass(frozen=True)
class Page:
    """One page of the delivery log, newest first."""

    deliveries: list[dict[str, Any]]
    next_cursor: str | None


async def list_deliveries(
    redis: Redis,
    *,
    room_id: str | None = None,
    state: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    scan_budget: int = 5000,
) -> Page:
    """Deliveries newest first, filtered by room and/or state, `limit` per page.

    A state filter over an index that does not imply it reads at most `scan_budget` ids per
    page; a page may then hold fewer than `limit` while `next_cursor` still says to go on.
    """
    if room_id is not None:
        index, want = keys.deliveries_by_room(room_id), state
    elif state in ("pending", "dead"):
        index, want = deliveries_in_state(state), None
    else:
        index, want = keys.DELIVERIES, state
    batch = limit + 1 if want is None else max(limit + 1, 200)
    high = "+" if cursor is None else f"({cursor}"
    found: list[tuple[str, dict[str, str]]] = []
    scanned, last, exhausted = 0, None, False
    while len(found) <= limit and scanned < scan_budget:
        ids = await redis.zrevrangebylex(index, high, "-", 0, batch)
        if not ids:
            exhausted = True
            break
        async with redis.pipeline(transaction=False) as pipe:
            for did in ids:
                pipe.hgetall(keys.delivery(did))
            records = await pipe.execute()
        for did, record in zip(ids, records, strict=True):
            scanned, last = scanned + 1, did
            if record and (want is None or record.get("state") == want):
                found.append((did, record))
                if len(found) > limit:
                    break
        high = f"({ids[-1]}"
    page = found[:limit]
    async with redis.pipeline(transaction=False) as pipe:
        for did, _ in page:
            pipe.lrange(keys.delivery_attempts(did), 0, -1)
        logs = await pipe.execute()
    views = [
        Delivery.from_hash(did, rec).view(att) for (did, rec), att in zip(page, logs, strict=True)
    ]
    if len(found) > limit:
        next_cursor: str | None = page[-1][0]
    elif exhausted:
        next_cursor = None
    else:
        next_cursor = last  # the scan budget ran out first
    return Page(views, next_cursor)


async def redeliver(redis: Redis, outbox: Outbox, delivery_ids: Iterable[str]) -> list[str]:
    """Queue finished deliveries again (same event, same `webhook-id`); returns those queued.

    Pending ones are already on their way and unknown ones are skipped. A redelivery reopens a
    (room, URL) queue a 410 stopped. The attempt log carries on; the schedule starts afresh.
    """
    ttl = record_ttl_s(outbox.settings)
    queued = []
    for did in dict.fromkeys(delivery_ids):
        while True:
            try:
                if await _requeue(redis, outbox, did, ttl):
                    queued.append(did)
                break
            except WatchError:
                continue
    return queued


async def _requeue(redis: Redis, outbox: Outbox, did: str, ttl: int) -> bool:
    async with redis.pipeline(transaction=True) as pipe:
        await pipe.watch(keys.delivery(did))
        delivery = Delivery.from_hash(did, await pipe.hgetall(keys.delivery(did)))
        if delivery.state not in FINISHED:
            return False
        if not await pipe.exists(keys.event_body(delivery.event_id)):
            return False
        pipe.multi()
        reopen_cmds(pipe, delivery, ttl)
        outbox.schedule.push(pipe, delivery.queue, did, now_ms())
        await pipe.execute()
        return True


async def room_deliveries_since(redis: Redis, room_id: str, since: float) -> list[str]:
    """The ids of a room's deliveries created at or after `since` (unix s), oldest first."""
    return list(
        await redis.zrangebylex(keys.deliveries_by_room(room_id), f"[{id_floor(since)}", "+")
    )
