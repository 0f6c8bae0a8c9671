"""The delivery log's read side and redelivery (`/auth/webhook/deliveries`, `/redeliver`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from worker import keys
from worker.keys import deliveries_in_state
from worker.queue.schedule import now_ms
from worker.webhooks.delivery import Delivery, DeliveryState, reopen_cmds, resolve_urls
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
    await resolve_urls(redis, [rec for _, rec in page])
    # A record from before the attempt log was folded in keeps its attempts in a list.
    async with redis.pipeline(transaction=False) as pipe:
        for did, _ in page:
            pipe.lrange(keys.delivery_attempts(did), 0, -1)
        older = await pipe.execute()
    views = [
        Delivery.from_hash(did, rec).view(old) for (did, rec), old in zip(page, older, strict=True)
    ]
    if len(found) > limit:
        next_cursor: str | None = page[-1][0]
    elif exhausted:
        next_cursor = None
    else:
        next_cursor = last  # the scan budget ran out first
    return Page(views, next_cursor)


QUEUED = "queued"
ALREADY_DELIVERED = "already delivered"
NOT_FOUND = "not found"
REPLAY_MAX = 10_000  # deliveries queued by one replay call
REPLAY_SCAN = 50_000  # index entries one replay call reads at most


async def redeliver(
    redis: Redis, outbox: Outbox, delivery_ids: Iterable[str], *, delivered_too: bool = False
) -> dict[str, str]:
    """Send deliveries again, or now; answers per id: `queued`, `already delivered`, `not found`.

    A dead one (or a delivered one when `delivered_too`) is queued again (same event, same
    `webhook-id`) at the end of its (room, URL) queue, reopening a queue a 410 stopped; the
    attempt log carries on and the schedule starts afresh. A pending one keeps its place and its
    queue is made due now, so it goes without waiting out its backoff and order holds.
    """
    ttl = record_ttl_s(outbox.settings)
    results: dict[str, str] = {}
    for did in dict.fromkeys(delivery_ids):
        while True:
            try:
                results[did] = await _requeue(redis, outbox, did, ttl, delivered_too)
                break
            except WatchError:
                continue
    return results


async def _requeue(redis: Redis, outbox: Outbox, did: str, ttl: int, delivered_too: bool) -> str:
    schedule = outbox.schedule
    async with redis.pipeline(transaction=True) as pipe:
        await pipe.watch(keys.delivery(did))
        record = await pipe.hgetall(keys.delivery(did))
        await resolve_urls(pipe, [record])
        delivery = Delivery.from_hash(did, record)
        if delivery.state is None:
            return NOT_FOUND
        if delivery.state == DeliveryState.DELIVERED and not delivered_too:
            return ALREADY_DELIVERED
        if delivery.state == DeliveryState.PENDING:
            # Due now unless a consumer holds the queue (it is being worked already).
            await pipe.watch(schedule.lease_key)
            leased = await pipe.hexists(schedule.lease_key, delivery.queue)
            pipe.multi()
            if not leased:
                pipe.zadd(schedule.due_key, {delivery.queue: now_ms()}, xx=True)
                pipe.rpush(schedule.wake_key, 1)
            pipe.hdel(keys.delivery(did), "next_at")
            await pipe.execute()
            return QUEUED
        if not delivery.url:
            return NOT_FOUND  # its URL's key expired: nowhere to send it
        if not delivery.body_inline and not await pipe.exists(keys.event_body(delivery.event_id)):
            return NOT_FOUND
        pipe.multi()
        reopen_cmds(pipe, delivery, ttl)
        schedule.push(pipe, delivery.queue, did, now_ms())
        await pipe.execute()
        return QUEUED


@dataclass(frozen=True)
class Replay:
    """What one bounded replay queued, and where the next call goes on (None = done)."""

    results: dict[str, str]
    next_cursor: str | None

    @property
    def queued(self) -> list[str]:
        """The ids queued (or sent now), oldest first."""
        return [d for d, r in self.results.items() if r == QUEUED]


async def replay(
    redis: Redis,
    outbox: Outbox,
    index: str,
    *,
    since: float,
    until: float | None = None,
    state: str = "dead",
    cursor: str | None = None,
    match: Callable[[dict[str, str]], bool] | None = None,  # on the record's state and url
    limit: int = REPLAY_MAX,
    scan: int = REPLAY_SCAN,
) -> Replay:
    """Redeliver, oldest first, the deliveries of `index` created in [since, until) that are in
    `state` (`dead`, or `all`), at most `limit` per call; `next_cursor` goes on where it stopped.

    Oldest first keeps each (room, URL) queue's order: they are appended in the order they were
    first emitted."""
    low = f"({cursor}" if cursor else f"[{id_floor(since)}"
    high = f"({id_floor(until)}" if until is not None else "+"
    results: dict[str, str] = {}
    scanned = 0
    last: str | None = None
    while len(results) < limit and scanned < scan:
        ids = await redis.zrangebylex(index, low, high, 0, min(500, limit - len(results)))
        if not ids:
            return Replay(results, None)
        async with redis.pipeline(transaction=False) as pipe:
            for did in ids:
                pipe.hmget(keys.delivery(did), "state", "url", "uh")
            fields = await pipe.execute()
        records = [
            {k: v for k, v in zip(("state", "url", "uh"), f, strict=True) if v is not None}
            for f in fields
        ]
        await resolve_urls(redis, records)
        chosen = [
            did
            for did, rec in zip(ids, records, strict=True)
            if rec
            and (state == "all" or rec.get("state") == state)
            and (match is None or match(rec))
        ]
        results |= await redeliver(redis, outbox, chosen, delivered_too=True)
        scanned += len(ids)
        last = ids[-1]
        low = f"({last}"
    more = await redis.zrangebylex(index, low, high, 0, 1)
    return Replay(results, last if more else None)


async def replay_url(
    redis: Redis,
    outbox: Outbox,
    url: str,
    *,
    since: float,
    until: float | None = None,
    state: str = "dead",
    cursor: str | None = None,
    limit: int = REPLAY_MAX,
    scan: int = REPLAY_SCAN,
) -> Replay:
    """`replay` of one URL's deliveries: its dead ones read from the index of dead deliveries,
    all of them from the index of every delivery (no index per URL: it cost each delivery about
    130 bytes of Redis for the retention period), at most `scan` entries read per call."""
    index = keys.deliveries_in_state("dead") if state == "dead" else keys.DELIVERIES
    return await replay(
        redis,
        outbox,
        index,
        since=since,
        until=until,
        state=state,
        cursor=cursor,
        match=lambda rec: rec.get("url") == url,
        limit=limit,
        scan=scan,
    )


async def room_deliveries_since(redis: Redis, room_id: str, since: float) -> list[str]:
    """The ids of a room's deliveries created at or after `since` (unix s), oldest first."""
    return list(
        await redis.zrangebylex(keys.deliveries_by_room(room_id), f"[{id_floor(since)}", "+")
    )
