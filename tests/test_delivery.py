"""Webhook delivery end to end (README, Webhooks): the real API and worker against real Redis, a
recording receiver with scripted answers standing in for the integrator."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from livekit import api
from redis.asyncio import Redis
from standardwebhooks import Webhook

from emulator.server import Emulator
from tests.support.api import (
    API_KEY,
    API_SECRET,
    WEBHOOK_SECRET,
    WEBHOOK_SECRET_OLD,
    eventually,
    minimal_request,
)
from tests.support.delivery import emit, queue_drained, record, settled, untrusted_tls_receiver
from tests.support.servers import Received, Receiver, RedisServer
from tests.support.stack import Stack, make_settings, run_stack
from worker import keys


@contextlib.asynccontextmanager
async def stack_with(
    redis_server: RedisServer, emulator: Emulator, **overrides: Any
) -> AsyncIterator[Stack]:
    """The stack with some settings changed."""
    settings = make_settings(redis_server.url, emulator.url, **overrides)
    async with run_stack(settings, emulator) as stack:
        yield stack


async def deliveries_of(stack: Stack, room_id: str) -> list[dict[str, Any]]:
    status, body = await stack.api.post("/auth/webhook/deliveries", {"room_id": room_id})
    assert status == 200 and body["status"] is True, body
    return list(body["deliveries"])


def on(receiver: Receiver, path: str, event: str | None = None) -> list[Received]:
    """What arrived on `path` (only events named `event`, when given)."""
    return [
        r
        for r in receiver.received
        if r.path == path and (event is None or r.json["event"] == event)
    ]


def verify_both_signatures(hit: Received, *secrets: str) -> None:
    for secret in secrets or (WEBHOOK_SECRET,):
        Webhook(secret).verify(hit.body, hit.headers)
    api.WebhookReceiver(api.TokenVerifier(API_KEY, API_SECRET)).receive(
        hit.body.decode(), hit.headers["Authorization"]
    )


async def test_failures_are_retried_with_the_same_webhook_id_until_delivered(
    stack: Stack, receiver: Receiver
) -> None:
    receiver.script["/hook"] = [500, 502, 503]  # then 200
    await stack.api.create(minimal_request("flaky-hook", webhook_url=receiver.at("/hook")))

    await receiver.wait_for(lambda r: len(on(receiver, "/hook", "room_created")) == 4)
    await eventually(lambda: queue_drained_stack(stack), what="delivery queue drained")

    hits = on(receiver, "/hook", "room_created")
    assert len(hits) == 4  # N failures + 1 success, and nothing after
    assert {h.headers["webhook-id"] for h in hits} == {hits[0].json["id"]}
    assert {h.body for h in hits} == {hits[0].body}  # the same bytes every time
    for hit in hits:
        verify_both_signatures(hit)
    (delivery,) = [  # one logical delivery
        d for d in await deliveries_of(stack, "flaky-hook") if d["event"] == "room_created"
    ]
    assert delivery["state"] == "delivered"
    assert delivery["event"] == "room_created"
    assert delivery["event_id"] == hits[0].json["id"]
    assert [a["status"] for a in delivery["attempts"]] == [500, 502, 503, 200]
    assert delivery["attempts"][0]["response"] == "scripted 500"
    times = [a["at"] for a in delivery["attempts"]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.2 * 0.8 - 0.01 for gap in gaps), gaps  # 0.2 s schedule, ±20 %


async def queue_drained_stack(stack: Stack) -> bool:
    client = Redis.from_url(stack.settings.redis_url, decode_responses=True)
    try:
        return await queue_drained(client)
    finally:
        await client.aclose()


@pytest.mark.slow
async def test_events_of_a_room_arrive_in_order_and_a_dead_endpoint_delays_no_other_room(
    redis_server: RedisServer, emulator: Emulator, redis: Redis, receiver: Receiver
) -> None:
    # A 60 s attempt timeout: the stuck room's first attempt outlasts everything below, so the
    # busy room finishing at all shows it never waited behind the stuck one.
    async with stack_with(redis_server, emulator, webhook_timeout=60) as stack:
        receiver.hang.add("/stuck")  # an endpoint that accepts and never answers
        stuck = await emit(redis, stack.settings, "stuck", receiver.at("/stuck"), count=5)
        await receiver.wait_for(lambda r: len(on(receiver, "/stuck")) == 1)
        # Room "busy": 50 events, failures sprinkled among the answers.
        receiver.script["/busy"] = [500 if k % 9 == 4 else 200 for k in range(70)]
        busy = await emit(redis, stack.settings, "busy", receiver.at("/busy"), count=50)
        busy_ids = [i for _, ids in busy for i in ids]

        await eventually(lambda: settled(redis, busy_ids), timeout=40, what="busy delivered")

        stuck_states = await states(redis, [i for _, ids in stuck for i in ids])
        stuck_seqs = [r.json["seq"] for r in on(receiver, "/stuck")]
    seqs = [r.json["seq"] for r in on(receiver, "/busy")]
    assert len(seqs) > 50  # some were retried
    assert seqs == sorted(seqs), seqs  # never a later event before an earlier one is done
    assert sorted(set(seqs)) == list(range(50))
    assert set(await states(redis, busy_ids)) == {"delivered"}
    # The stuck room is still on its first event's first attempt; nothing behind it has moved.
    assert stuck_seqs == [0]
    assert set(stuck_states) == {"pending"}


async def states(redis: Redis, delivery_ids: list[str]) -> list[str]:
    return [(await record(redis, i))["state"] for i in delivery_ids]


async def test_a_redirect_is_a_failure_and_is_never_followed(
    stack: Stack, receiver: Receiver, redis: Redis
) -> None:
    receiver.script["/moved"] = [receiver.at("/target")] * 4  # 308 on every attempt
    ((_, (did,)),) = await emit(redis, stack.settings, "moved", receiver.at("/moved"))

    await eventually(lambda: settled(redis, [did]), what="redirected delivery settled")

    rec = await record(redis, did)
    assert rec["state"] == "dead"
    assert [a["status"] for a in rec["attempt_log"]] == [308] * 4
    assert rec["reason"] == "gave up after 4 attempts; last: HTTP 308"
    assert on(receiver, "/target") == []


async def test_gone_dead_letters_the_delivery_and_stops_the_rooms_queue_to_that_url(
    stack: Stack, receiver: Receiver, redis: Redis
) -> None:
    receiver.script["/gone"] = [410]
    url = receiver.at("/gone")
    events = await emit(redis, stack.settings, "left", url, count=3)
    ids = [ids[0] for _, ids in events]

    await eventually(lambda: settled(redis, ids), what="gone queue settled")

    first, *rest = [await record(redis, i) for i in ids]
    assert first["state"] == "dead" and first["reason"].startswith("receiver answered 410 Gone")
    assert [a["status"] for a in first["attempt_log"]] == [410]  # no retry after 410
    for rec in rest:
        assert rec["state"] == "dead" and rec["attempt_log"] == []  # never sent
        assert "410 Gone to an earlier event" in rec["reason"]
    assert len(on(receiver, "/gone")) == 1
    # A later event of that room to that URL is dead at once, unsent ...
    ((_, (later,)),) = await emit(redis, stack.settings, "left", url)
    await eventually(lambda: settled(redis, [later]), what="later event settled")
    assert (await record(redis, later))["state"] == "dead"
    assert len(on(receiver, "/gone")) == 1
    # ... while another room's queue to the same URL is not stopped.
    ((_, (other,)),) = await emit(redis, stack.settings, "other-room", url)
    await eventually(lambda: settled(redis, [other]), what="other room settled")
    assert (await record(redis, other))["state"] == "delivered"


async def test_a_redelivery_reopens_a_queue_stopped_by_gone(
    stack: Stack, receiver: Receiver, redis: Redis
) -> None:
    receiver.script["/gone"] = [410]
    url = receiver.at("/gone")
    ((event_id, (did,)),) = await emit(redis, stack.settings, "back", url)
    await eventually(lambda: settled(redis, [did]), what="gone settled")

    status, body = await stack.api.post("/auth/webhook/redeliver", {"delivery_ids": [did]})
    assert (status, body["status"], body["queued"]) == (200, True, 1)
    await eventually(lambda: settled(redis, [did]), what="redelivery settled")
    ((_, (after,)),) = await emit(redis, stack.settings, "back", url)
    await eventually(lambda: settled(redis, [after]), what="next event settled")

    assert (await record(redis, did))["state"] == "delivered"
    assert (await record(redis, after))["state"] == "delivered"
    hits = on(receiver, "/gone")
    assert [h.headers["webhook-id"] for h in hits[:2]] == [event_id, event_id]


@pytest.mark.slow
async def test_retry_after_on_429_and_503_is_honoured_up_to_twice_the_schedule(
    redis_server: RedisServer, emulator: Emulator, redis: Redis, receiver: Receiver
) -> None:
    receiver.script["/busy"] = [(429, {"Retry-After": "1"}), (503, {"Retry-After": "3600"})]
    async with stack_with(
        redis_server, emulator, webhook_retry_schedule="0,0.6,0.6", webhook_jitter=0.2
    ) as stack:
        ((_, (did,)),) = await emit(redis, stack.settings, "polite", receiver.at("/busy"))
        await eventually(lambda: settled(redis, [did]), what="delivery settled")

    hits = on(receiver, "/busy")
    assert len(hits) == 3
    first_wait, second_wait = hits[1].at - hits[0].at, hits[2].at - hits[1].at
    # 1 s asked, above the 0.48-0.72 s planned and under the 1.2 s cap: the receiver's wish.
    assert 0.98 <= first_wait < 2, first_wait
    # An hour asked: capped at twice the planned 0.6 s.
    assert 1.18 <= second_wait < 3, second_wait
    assert (await record(redis, did))["state"] == "delivered"


async def test_an_unanswered_attempt_times_out_and_is_retried(
    redis_server: RedisServer, emulator: Emulator, redis: Redis, receiver: Receiver
) -> None:
    receiver.hang.add("/slow")
    async with stack_with(redis_server, emulator, webhook_timeout=0.5) as stack:
        ((event_id, (did,)),) = await emit(redis, stack.settings, "slow", receiver.at("/slow"))
        await receiver.wait_for(lambda r: len(on(receiver, "/slow")) == 1)
        receiver.hang.discard("/slow")  # the next attempt gets an answer
        await eventually(lambda: settled(redis, [did]), what="delivery settled")

    rec = await record(redis, did)
    first, second = rec["attempt_log"]
    assert first["error"] == "timeout after 0.5 s" and "status" not in first
    assert 450 <= first["duration_ms"] < 1500
    assert second["status"] == 200
    assert rec["state"] == "delivered"
    assert {h.headers["webhook-id"] for h in on(receiver, "/slow")} == {event_id}


@pytest.mark.slow
async def test_the_global_target_receives_every_rooms_events_on_its_own_queue(
    redis_server: RedisServer, emulator: Emulator, redis: Redis, receiver: Receiver
) -> None:
    receiver.hang.add("/global")  # a stuck global target must not hold up the rooms' own URLs
    async with stack_with(redis_server, emulator, webhook_url=receiver.at("/global")) as stack:
        await stack.api.create(minimal_request("g1", webhook_url=receiver.at("/g1")))
        await stack.api.create(minimal_request("g2", webhook_url=receiver.at("/g2")))
        await stack.api.create(minimal_request("g3"))  # no URL of its own
        await receiver.wait_for(
            lambda r: (
                len(on(receiver, "/g1", "room_created")) == 1
                and len(on(receiver, "/g2", "room_created")) == 1
            )
        )
        await receiver.wait_for(lambda r: len(on(receiver, "/global", "room_created")) == 3)
        receiver.hang.discard("/global")

    created = on(receiver, "/global", "room_created")
    assert {h.json["room"]["room_id"] for h in created} == {"g1", "g2", "g3"}
    (g1,) = on(receiver, "/g1", "room_created")
    assert g1.json["room"]["room_id"] == "g1"
    # The same event (same id) goes to both of a room's targets.
    g1_global = next(h for h in created if h.json["room"]["room_id"] == "g1")
    assert g1_global.headers["webhook-id"] == g1.headers["webhook-id"]


async def test_signatures_verify_with_either_key_during_a_rotation(
    redis_server: RedisServer, emulator: Emulator, redis: Redis, receiver: Receiver
) -> None:
    rotating = f"{WEBHOOK_SECRET},{WEBHOOK_SECRET_OLD}"
    async with stack_with(redis_server, emulator, webhook_secret=rotating) as stack:
        await stack.api.create(minimal_request("rotating", webhook_url=receiver.at("/hook")))
        await receiver.wait_for(lambda r: len(on(receiver, "/hook", "room_created")) == 1)
    (hit,) = on(receiver, "/hook", "room_created")

    assert len(hit.headers["webhook-signature"].split(" ")) == 2
    verify_both_signatures(hit, WEBHOOK_SECRET, WEBHOOK_SECRET_OLD)
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.headers["User-Agent"].startswith("roomkeeper/")
    assert hit.headers["Hash-Token"] == hit.headers["Authorization"]
    assert abs(int(hit.headers["webhook-timestamp"]) - time.time()) < 5


async def test_an_untrusted_tls_certificate_fails_the_attempt(stack: Stack, redis: Redis) -> None:
    async with untrusted_tls_receiver() as (url, tls_receiver):
        ((_, (did,)),) = await emit(redis, stack.settings, "tls", f"{url}/hook")
        await eventually(lambda: settled(redis, [did]), what="delivery settled")

    rec = await record(redis, did)
    assert rec["state"] == "dead"
    assert len(rec["attempt_log"]) == 4  # retried: a certificate can be fixed
    assert all("TLS verification failed" in a["error"] for a in rec["attempt_log"])
    assert "certificate" in rec["attempt_log"][0]["error"].lower()
    assert tls_receiver.received == []


async def test_a_long_retry_wait_is_kept_in_our_own_keys_not_arqs(
    redis_server: RedisServer, emulator: Emulator, redis: Redis, receiver: Receiver
) -> None:
    receiver.script["/later"] = [503]
    async with stack_with(redis_server, emulator, webhook_retry_schedule="0,36000") as stack:
        ((_, (did,)),) = await emit(redis, stack.settings, "patient", receiver.at("/later"))
        await receiver.wait_for(lambda r: len(on(receiver, "/later")) == 1)
        (view,) = await eventually(
            lambda: _with_next_attempt(stack, "patient"), what="retry scheduled"
        )

    # Ten hours (±20 %) ahead, on our own schedule: nothing here can expire before it is due.
    assert view["state"] == "pending"
    assert 36000 * 0.8 - 5 <= view["next_attempt_at"] - time.time() <= 36000 * 1.2
    ((queue, due_ms),) = await redis.zrange(
        keys.schedule_due(keys.DELIVERY_QUEUES), 0, -1, withscores=True
    )
    assert queue.startswith("patient|")
    assert abs(due_ms / 1000 - view["next_attempt_at"]) < 1
    assert await redis.ttl(keys.delivery(did)) > 36000 * 1.2
    assert await redis.keys("arq:*") == []  # no arq job holds any of it


async def _with_next_attempt(stack: Stack, room_id: str) -> list[dict[str, Any]] | None:
    found = await deliveries_of(stack, room_id)
    return found if found and "next_attempt_at" in found[0] else None
