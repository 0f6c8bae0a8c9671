"""The delivery log's read side and redelivery (`/auth/webhook/deliveries`, `/redeliver`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from worker import keys
from worker.keys import deliveries_in_state
from worker.queue.schedule import now_ms
from worker.webhooks.engine import Outbox, id_floor, record_ttl_s


@dataclass(frozen=True)
class Page:
    """One page of the delivery log, newest first."""

    deliveries: list[dict[str, Any]]
    next_cursor: str | None


def _view(did: str, record: dict[str, str], attempts: list[str]) -> dict[str, Any]:
    view: dict[str, Any] = {
        "delivery_id": did,
        "event_id": record.get("event_id", ""),
        "event": record.get("event", ""),
        "room_id": record.get("room_id", ""),
        "url": record.get("url", ""),
        "state": record.get("state", ""),
        "created_at": float(record.get("created", 0)),
    }
    if record.get("reason"):
        view["reason"] = record["reason"]
    if record.get("finished"):
        view["finished_at"] = float(record["finished"])
    if view["state"] == "pending" and record.get("next_at"):
        view["next_attempt_at"] = float(record["next_at"])
    view["attempts"] = [json.loads(a) for a in attempts]
    return view


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
    views = [_view(did, rec, att) for (did, rec), att in zip(page, logs, strict=True)]
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
        record = await pipe.hgetall(keys.delivery(did))
        state = record.get("state")
        if state not in ("delivered", "dead"):
            return False
        body_key = keys.event_body(record["event_id"])
        if not await pipe.exists(body_key):
            return False
        pipe.multi()
        pipe.hset(keys.delivery(did), mapping={"state": "pending", "attempts": 0})
        pipe.hdel(keys.delivery(did), "reason", "finished", "next_at", "inflight")
        pipe.hincrby(keys.DELIVERY_COUNTS, state, -1)
        pipe.hincrby(keys.DELIVERY_COUNTS, "pending", 1)
        pipe.zrem(deliveries_in_state("dead"), did)
        pipe.zadd(deliveries_in_state("pending"), {did: 0})
        pipe.delete(keys.gone(record["queue"]))
        for key in (keys.delivery(did), keys.delivery_attempts(did), body_key):
            pipe.expire(key, ttl)
        outbox.schedule.push(pipe, record["queue"], did, now_ms())
        await pipe.execute()
        return True


async def room_deliveries_since(redis: Redis, room_id: str, since: float) -> list[str]:
    """The ids of a room's deliveries created at or after `since` (unix s), oldest first."""
    return list(
        await redis.zrangebylex(keys.deliveries_by_room(room_id), f"[{id_floor(since)}", "+")
    )
