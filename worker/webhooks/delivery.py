"""The delivery record (one event to one URL) and its one writer outside the engine's scripts.

A delivery is a hash (`keys.delivery`) indexed by time, by room and by state, counted per state,
its attempt log folded in as its `log` field (`worker.webhooks.stored`). Created by the outbox,
moved on by `peek.lua` / `settle.lua` / `advance.lua` (the attempt's atomic steps), reopened by a
redelivery and removed by `prune.lua`; every other write is a function here. The body of an event
with one target is kept in its delivery's record too (`body_fields`), not in a key of its own; an
event sent to two URLs keeps one body key both records share (`keys.event_body`). Once delivered or
dead it keeps only what the deliveries API shows (its `queue` and attempt count are dropped: the
queue follows from the room and URL, and a redelivery counts attempts from zero).

What a record does not store, it derives: its URL is kept once in a key of its own
(`keys.webhook_url`) and the record names it by its hash (`uh`), so a long URL does not push the
record out of Redis's compact encoding; its creation time is the time in its id
(`created_at`), and its finishing time is stored as `fin`, milliseconds after that. Records
written before this (`url`, `created`, `finished` as they are) are still read.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from worker import keys
from worker.webhooks.stored import attempt_log, piece_fields


class DeliveryState(StrEnum):
    """Pending until delivered (a 2xx) or dead (out of attempts, 410, blocked)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


FINISHED = (DeliveryState.DELIVERED, DeliveryState.DEAD)


@lru_cache(maxsize=1024)  # a few URLs take nearly every event: each hashed once, not thrice
def url_hash(url: str) -> str:
    """A short, stable name for a URL in keys (its queues, its index)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def body_fields(packed: str) -> dict[str, str]:
    """A packed body as fields of its record: `b0`, `b1`, … (`peek.lua` joins them again)."""
    return piece_fields("b", packed)


def queue_id(room_id: str, url: str) -> str:
    """The (room, URL) queue a delivery belongs to (`|` never occurs in a room_id)."""
    return f"{room_id}|{url_hash(url)}"


def _float(raw: str | None) -> float | None:
    return float(raw) if raw else None


def id_time(delivery_id: str) -> float:
    """The time in a delivery id (`engine.new_delivery_id`: `dlv_` and 14 hex digits of
    microseconds); 0 for an id of another shape."""
    try:
        return int(delivery_id[4:18], 16) / 1_000_000
    except ValueError:
        return 0.0


def created_at(delivery_id: str, record: Mapping[str, str]) -> float:
    """When a delivery was created: its `created` field (older records), else its id's time."""
    if record.get("created"):
        return float(record["created"])
    return id_time(delivery_id)


def _finished(delivery_id: str, record: Mapping[str, str]) -> float | None:
    """When it was delivered or died: `fin` ms after its id's time, or `finished` (older)."""
    if record.get("fin"):
        return round(id_time(delivery_id) + int(record["fin"]) / 1000, 3)
    return _float(record.get("finished"))


@dataclass(frozen=True)
class Delivery:
    """One event to one URL."""

    delivery_id: str
    event_id: str
    event: str
    room_id: str
    url: str
    queue: str  # its (room, URL) queue on the `dq` schedule
    state: DeliveryState | None = DeliveryState.PENDING
    attempts: int = 0
    created: float = 0.0
    reason: str = ""
    finished: float | None = None
    next_at: float | None = None
    inflight: float | None = None  # when the attempt under way began
    held: str = ""  # why its host's breaker or rate holds it back (pending only)
    log: str = ""  # the attempt log, one line per attempt (see `worker.webhooks.stored`)
    body_inline: bool = False  # its body is in its record (else in the event's body key)

    @classmethod
    def from_hash(cls, delivery_id: str, record: Mapping[str, str]) -> Delivery:
        """The delivery a record holds (an empty one: no state, it was pruned); its `url` is
        there once `resolve_urls` has read it."""
        raw_state = record.get("state")
        room_id, url = record.get("room_id", ""), record.get("url", "")
        uh = record.get("uh") or (url_hash(url) if url else "")
        created = created_at(delivery_id, record)
        return cls(
            delivery_id=delivery_id,
            event_id=record.get("event_id", ""),
            event=record.get("event", ""),
            room_id=room_id,
            url=url,
            queue=record.get("queue") or (f"{room_id}|{uh}" if uh else ""),
            state=DeliveryState(raw_state) if raw_state in set(DeliveryState) else None,
            attempts=int(record.get("attempts") or 0),
            created=created,
            reason=record.get("reason", ""),
            finished=_finished(delivery_id, record),
            next_at=_float(record.get("next_at")),
            inflight=_float(record.get("inflight")),
            held=record.get("held", ""),
            log=record.get("log", ""),
            body_inline="b0" in record,
        )

    @property
    def url_id(self) -> str:
        """The hash its URL is kept under (`keys.webhook_url`)."""
        return self.queue.rpartition("|")[2] if self.queue else url_hash(self.url)

    def to_mapping(self) -> dict[str, str | int | float]:
        """The fields a new delivery is written with (its URL and creation time are not: see
        the module's docstring)."""
        return {
            "event_id": self.event_id,
            "event": self.event,
            "room_id": self.room_id,
            "uh": url_hash(self.url),
            "queue": self.queue,
            "state": str(self.state),
            "attempts": self.attempts,
        }

    def view(self, older: Sequence[str] = ()) -> dict[str, Any]:
        """The delivery as `/auth/webhook/deliveries` lists it, with its attempt log (`older`:
        the JSON entries of the separate list records kept before the log was folded in)."""
        out: dict[str, Any] = {
            "delivery_id": self.delivery_id,
            "event_id": self.event_id,
            "event": self.event,
            "room_id": self.room_id,
            "url": self.url,
            "state": str(self.state or ""),
            "created_at": self.created,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.finished:
            out["finished_at"] = self.finished
        if self.state == DeliveryState.PENDING and self.next_at:
            out["next_attempt_at"] = self.next_at
        if self.state == DeliveryState.PENDING and self.held:
            out["reason"] = self.held
        out["attempts"] = [json.loads(a) for a in older] + attempt_log(self.log)
        return out


def new_cmds(pipe: Any, delivery: Delivery, ttl_s: int, body: str | None = None) -> None:
    """A new pending delivery: its record (with the packed `body` of an event it alone
    delivers), its index entries, its count."""
    did = delivery.delivery_id
    record = keys.delivery(did)
    fields: list[Any] = []
    for pair in delivery.to_mapping().items():
        fields += pair
    if body is not None:
        for pair in body_fields(body).items():
            fields += pair
    # The commands as redis-py's command methods would queue them, without their argument
    # handling: this runs for every delivery of every event.
    command = pipe.execute_command
    command("HSET", record, *fields)
    command("EXPIRE", record, ttl_s)
    # The URL outlives every record that names it: each new or reopened one renews it for
    # twice a record's own safety-net TTL (a record's TTL restarts when it is settled).
    command("SET", keys.webhook_url(url_hash(delivery.url)), delivery.url, "EX", 2 * ttl_s)
    command("ZADD", keys.DELIVERIES, 0, did)
    command("ZADD", keys.deliveries_by_room(delivery.room_id), 0, did)
    command("ZADD", _PENDING_INDEX, 0, did)
    command("HINCRBY", keys.DELIVERY_COUNTS, DeliveryState.PENDING, 1)


_PENDING_INDEX = keys.deliveries_in_state(DeliveryState.PENDING)


def reopen_cmds(pipe: Any, delivery: Delivery, ttl_s: int) -> None:
    """A finished delivery pending again (a redelivery): same event, attempts from zero.

    It also reopens the (room, URL) queue a 410 stopped. The attempt log carries on.
    """
    did = delivery.delivery_id
    assert delivery.state in FINISHED
    assert delivery.url, "a reopened delivery's URL is resolved (`resolve_urls`)"
    mapping = {"state": DeliveryState.PENDING, "attempts": 0, "queue": delivery.queue}
    pipe.hset(keys.delivery(did), mapping=mapping)
    pipe.hdel(keys.delivery(did), "reason", "finished", "fin", "next_at", "inflight", "held")
    pipe.set(keys.webhook_url(delivery.url_id), delivery.url, ex=2 * ttl_s)
    pipe.hincrby(keys.DELIVERY_COUNTS, delivery.state, -1)
    pipe.hincrby(keys.DELIVERY_COUNTS, DeliveryState.PENDING, 1)
    pipe.zrem(keys.deliveries_in_state(DeliveryState.DEAD), did)
    pipe.zadd(keys.deliveries_in_state(DeliveryState.PENDING), {did: 0})
    pipe.delete(keys.gone(delivery.queue))
    for key in (
        keys.delivery(did),
        keys.delivery_attempts(did),
        keys.event_body(delivery.event_id),
    ):
        pipe.expire(key, ttl_s)


async def resolve_urls(redis: Any, records: Sequence[dict[str, str]]) -> None:
    """Fill in the `url` of each record that names its URL by hash (a URL whose key expired
    stays missing), one round trip for them all."""
    wanted = sorted({r["uh"] for r in records if "uh" in r and "url" not in r})
    if not wanted:
        return
    found = dict(zip(wanted, await redis.mget([keys.webhook_url(h) for h in wanted]), strict=True))
    for record in records:
        url = found.get(record.get("uh", ""))
        if url is not None and "url" not in record:
            record["url"] = url


async def mark_inflight(redis: Any, delivery_id: str) -> None:
    """An attempt begins now (so a crash during it is noticed and logged as interrupted)."""
    await redis.hset(keys.delivery(delivery_id), "inflight", f"{time.time():.6f}")
