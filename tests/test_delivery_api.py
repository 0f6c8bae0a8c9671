"""Delivery visibility (README, The API and Webhooks): `/auth/webhook/deliveries`, `/auth/webhook/redeliver`,
the Prometheus figures, and pruning after the retention period."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from tests.support.api import eventually
from tests.support.delivery import emit, record, settled
from tests.support.servers import Receiver
from tests.support.stack import Stack, make_settings, run_stack
from worker import keys
from worker.keys import deliveries_in_state
from worker.settings import Settings
from worker.webhooks.engine import Dispatcher
from worker.webhooks.http1 import Pool


async def listing(stack: Stack, **query: Any) -> dict[str, Any]:
    status, body = await stack.api.post("/auth/webhook/deliveries", query)
    assert status == 200 and body["status"] is True, body
    return dict(body)


async def redeliver(stack: Stack, **query: Any) -> dict[str, Any]:
    status, body = await stack.api.post("/auth/webhook/redeliver", query)
    assert status == 200 and body["status"] is True, body
    return dict(body)


async def test_the_log_shows_each_attempt_and_pages_newest_first_with_a_cursor(
    stack: Stack, receiver: Receiver, redis: Redis
) -> None:
    receiver.script["/paged"] = [503]
    events = await emit(redis, stack.settings, "paged", receiver.at("/paged"), count=7)
    ids = [i for _, (i,) in events]
    await _settled(redis, ids)

    pages = []
    cursor = None
    while True:
        body = await listing(stack, room_id="paged", limit=3, cursor=cursor)
        pages.append([d["delivery_id"] for d in body["deliveries"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == ids[::-1]  # newest first, each once

    oldest = body["deliveries"][-1]
    assert oldest["delivery_id"] == ids[0]
    assert oldest["event_id"] == events[0][0]
    assert oldest["event"] == "participant_joined"
    assert oldest["room_id"] == "paged"
    assert oldest["url"] == receiver.at("/paged")
    assert oldest["state"] == "delivered"
    assert "reason" not in oldest
    first, second = oldest["attempts"]
    assert first["status"] == 503 and first["response"] == "scripted 503"
    assert second["status"] == 200 and second["response"] == "ok"
    assert first["at"] <= second["at"] <= time.time()
    assert all(a["duration_ms"] >= 0 for a in oldest["attempts"])


async def test_the_log_filters_by_state_and_shows_why_a_delivery_is_dead(
    stack: Stack, receiver: Receiver, redis: Redis
) -> None:
    receiver.script["/mixed"] = [500, 500, 500, 500]  # the first event exhausts its 4 attempts
    events = await emit(redis, stack.settings, "mixed", receiver.at("/mixed"), count=3)
    ids = [i for _, (i,) in events]
    await _settled(redis, ids)

    (dead,) = (await listing(stack, state="dead"))["deliveries"]
    assert dead["delivery_id"] == ids[0]
    assert dead["reason"] == "gave up after 4 attempts; last: HTTP 500"
    assert [a["status"] for a in dead["attempts"]] == [500] * 4
    delivered = (await listing(stack, state="delivered"))["deliveries"]
    assert [d["delivery_id"] for d in delivered] == ids[:0:-1]
    by_room = await listing(stack, room_id="mixed", state="dead")
    assert [d["delivery_id"] for d in by_room["deliveries"]] == [ids[0]]
    assert (await listing(stack, state="pending"))["deliveries"] == []
    assert (await listing(stack, room_id="no-such-room")) | {"deliveries": []} == {
        "status": True,
        "msg": "success",
        "status_code": "SUCCESS",
        "deliveries": [],
        "next_cursor": None,
        "warnings": [],
    }


async def test_a_dead_delivery_redelivered_through_the_api_arrives_with_the_same_id(
    stack: Stack, receiver: Receiver, redis: Redis
) -> None:
    receiver.script["/later"] = [500] * 4
    ((event_id, (did,)),) = await emit(redis, stack.settings, "later", receiver.at("/later"))
    await _settled(redis, [did])
    assert (await record(redis, did))["state"] == "dead"

    body = await redeliver(stack, delivery_ids=[did])
    await _settled(redis, [did])

    assert body["queued"] == 1 and body["delivery_ids"] == [did]
    hits = [r for r in receiver.received if r.path == "/later"]
    assert len(hits) == 5
    assert {h.headers["webhook-id"] for h in hits} == {event_id}
    assert {h.body for h in hits} == {hits[0].body}
    (view,) = (await listing(stack, room_id="later"))["deliveries"]
    assert view["state"] == "delivered" and "reason" not in view
    assert [a["status"] for a in view["attempts"]] == [500, 500, 500, 500, 200]


async def test_a_rooms_deliveries_since_a_time_are_sent_again(
    stack: Stack, receiver: Receiver, redis: Redis
) -> None:
    before = time.time()
    events = await emit(redis, stack.settings, "replay", receiver.at("/replay"), count=2)
    ids = [i for _, (i,) in events]
    await _settled(redis, ids)

    assert (await redeliver(stack, room_id="replay", since=time.time() + 60))["queued"] == 0
    body = await redeliver(stack, room_id="replay", since=int(before))
    await _settled(redis, ids)

    assert body["queued"] == 2
    hits = [r.headers["webhook-id"] for r in receiver.received if r.path == "/replay"]
    assert hits == [events[0][0], events[1][0]] * 2  # in order, then again in order


async def test_redeliver_answers_per_id_and_never_queues_one_twice(
    stack: Stack, receiver: Receiver, redis: Redis
) -> None:
    receiver.hang.add("/slow")
    ((_, (did,)),) = await emit(redis, stack.settings, "slow", receiver.at("/slow"))
    ((_, (done,)),) = await emit(redis, stack.settings, "fine", receiver.at("/fine"))
    await _settled(redis, [done])
    await receiver.wait_for(lambda got: any(r.path == "/slow" for r in got))
    unknown = "dlv_00000000000000000000"

    body = await redeliver(stack, delivery_ids=[did, done, unknown])

    assert body["results"] == [
        {"delivery_id": did, "result": "queued"},  # in flight already: it stays one delivery
        {"delivery_id": done, "result": "already delivered"},
        {"delivery_id": unknown, "result": "not found"},
    ]
    assert (body["queued"], body["delivery_ids"]) == (1, [did])
    assert await redis.llen(f"{keys.PREFIX}dq:q:{(await record(redis, did))['queue']}") == 1
    assert len([r for r in receiver.received if r.path == "/fine"]) == 1
    receiver.hang.discard("/slow")


async def test_a_pending_delivery_waiting_out_its_backoff_is_sent_now_in_order(
    settings: Settings, emulator: Any, redis: Redis, receiver: Receiver
) -> None:
    long_wait = make_settings(
        settings.redis_url, settings.livekit_url, webhook_retry_schedule="0,3600,3600"
    )
    async with run_stack(long_wait, emulator) as stack:
        receiver.script["/backoff"] = [503]
        events = await emit(redis, long_wait, "backoff", receiver.at("/backoff"), count=3)
        ids = [i for _, (i,) in events]
        await eventually(
            lambda: _next_attempt(redis, ids[0]), what="the first delivery waiting out an hour"
        )

        body = await redeliver(stack, delivery_ids=[ids[0]])
        await _settled(redis, ids)

    assert body["results"] == [{"delivery_id": ids[0], "result": "queued"}]
    hits = [r.headers["webhook-id"] for r in receiver.received if r.path == "/backoff"]
    assert hits == [events[0][0], events[0][0], events[1][0], events[2][0]]
    assert len((await record(redis, ids[0]))["attempt_log"]) == 2


async def _next_attempt(redis: Redis, did: str) -> bool:
    rec = await record(redis, did)
    return float(rec.get("next_at", 0)) > time.time() + 1000


async def test_bad_fields_are_refused_naming_the_field(stack: Stack) -> None:
    cases: list[tuple[str, Any, str]] = [
        ("deliveries", [], "request body must be a JSON object"),
        ("deliveries", {"state": "lost"}, "state: must be one of pending, delivered, dead"),
        ("deliveries", {"limit": 0}, "limit: must be an integer from 1 to 500"),
        ("deliveries", {"limit": 501}, "limit: must be an integer from 1 to 500"),
        ("deliveries", {"limit": "ten"}, "limit: must be an integer from 1 to 500"),
        ("deliveries", {"limit": True}, "limit: must be an integer from 1 to 500"),
        ("deliveries", {"limit": 2.5}, "limit: must be an integer from 1 to 500"),
        ("deliveries", {"cursor": "abc"}, "cursor: not a cursor this API returned"),
        ("deliveries", {"cursor": 5}, "cursor: not a cursor this API returned"),
        ("deliveries", {"room_id": 5}, "room_id: must be a non-empty string"),
        ("deliveries", {"room_id": ""}, "room_id: must be a non-empty string"),
        ("redeliver", {}, "delivery_ids, room_id (with since) or url (with since) is required"),
        ("redeliver", {"delivery_ids": []}, "delivery_ids: must be a list of 1 to 1000"),
        ("redeliver", {"delivery_ids": "dlv_1"}, "delivery_ids: must be a list of 1 to 1000"),
        ("redeliver", {"delivery_ids": ["dlv_x"]}, "delivery_ids[0]: not a delivery id"),
        ("redeliver", {"delivery_ids": ["dlv_" + "0" * 20, 7]}, "delivery_ids[1]: not a"),
        ("redeliver", {"room_id": "r"}, "since: required with room_id (unix seconds)"),
        ("redeliver", {"room_id": "r", "since": -1}, "since: must be unix seconds"),
        ("redeliver", {"room_id": "r", "since": "yesterday"}, "since: must be unix seconds"),
        ("redeliver", {"room_id": "r", "since": True}, "since: must be unix seconds"),
        ("redeliver", {"since": 0}, "delivery_ids, room_id (with since) or url (with since)"),
        (
            "redeliver",
            {"delivery_ids": ["dlv_" + "0" * 20], "room_id": "r", "since": 0},
            "give one of delivery_ids, room_id (with since) or url (with since)",
        ),
        (
            "redeliver",
            {"delivery_ids": ["dlv_" + "0" * 20], "since": 0},
            "give either delivery_ids, or room_id with since, not both",
        ),
        ("redeliver", {"url": "http://h/x"}, "since: required with url (unix seconds)"),
        ("redeliver", {"url": "ftp://h/x", "since": 0}, "url: must be an absolute http(s) URL"),
        ("redeliver", {"url": 5, "since": 0}, "url: must be an absolute http(s) URL"),
        ("redeliver", {"url": "http://h/", "since": 5, "until": 5}, "until: must be later"),
        ("redeliver", {"url": "http://h/", "since": 0, "until": "x"}, "until: must be unix"),
        ("redeliver", {"url": "http://h/", "since": 0, "state": "pending"}, "state: must be one"),
        ("redeliver", {"url": "http://h/", "since": 0, "cursor": "x"}, "cursor: not a cursor"),
        ("test", {}, "url: is required"),
        ("test", {"url": "mailto:x@y"}, "url: must be an absolute http(s) URL"),
        ("test", [], "request body must be a JSON object"),
    ]
    wrong = []
    for route, payload, msg in cases:
        status, body = await stack.api.post(f"/auth/webhook/{route}", payload)
        if not (
            status == 200
            and body.get("status") is False
            and body.get("status_code") == "INVALID_PARAMETERS"
            and str(body.get("msg", "")).startswith(msg)
        ):
            wrong.append((route, payload, status, body))
    assert not wrong, wrong


async def test_the_routes_need_the_api_signature(stack: Stack) -> None:
    status, body = await stack.api.raw("/auth/webhook/deliveries", b"{}", sign=False)
    assert status == 401 and body["status_code"] == "MISSING_REQUIRED_PARAMETER"


async def test_metrics_show_outcomes_attempt_latency_and_pending_and_dead_counts(
    stack: Stack, receiver: Receiver, redis: Redis
) -> None:
    before = await _metrics(stack)
    receiver.script["/m-dead"] = [500] * 4
    receiver.hang.add("/m-pending")
    ok = await emit(redis, stack.settings, "m-ok", receiver.at("/m-ok"), count=2)
    dead = await emit(redis, stack.settings, "m-dead", receiver.at("/m-dead"))
    await emit(redis, stack.settings, "m-pending", receiver.at("/m-pending"))
    await _settled(redis, [i for _, ids in ok + dead for i in ids])

    after = await _metrics(stack)
    receiver.hang.discard("/m-pending")

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert after[("roomkeeper_webhook_deliveries_in_state", (("state", "pending"),))] == 1
    assert after[("roomkeeper_webhook_deliveries_in_state", (("state", "dead"),))] == 1
    assert after[("roomkeeper_webhook_deliveries_in_state", (("state", "delivered"),))] == 2
    assert delta("roomkeeper_webhook_deliveries_total", outcome="delivered") == 2
    assert delta("roomkeeper_webhook_deliveries_total", outcome="dead") == 1
    assert delta("roomkeeper_webhook_attempts_total", result="5xx") == 4
    assert delta("roomkeeper_webhook_attempts_total", result="2xx") == 2
    assert delta("roomkeeper_webhook_attempt_seconds_count") == 6
    assert delta("roomkeeper_webhook_delivery_seconds_count") == 2


async def test_pruning_removes_finished_records_and_keeps_the_counts_right(
    stack: Stack, receiver: Receiver, redis: Redis
) -> None:
    receiver.script["/p-dead"] = [500] * 4
    receiver.hang.add("/p-pending")
    started = time.time()
    done = await emit(redis, stack.settings, "p-ok", receiver.at("/p-ok"), count=2)
    done += await emit(redis, stack.settings, "p-dead", receiver.at("/p-dead"))
    ((_, (pending,)),) = await emit(redis, stack.settings, "p-pending", receiver.at("/p-pending"))
    finished = [i for _, (i,) in done]
    await _settled(redis, finished)

    async with Pool() as pool:
        dispatcher = Dispatcher(redis, stack.settings, pool)
        assert await dispatcher.prune(before=started - 1) == 0  # nothing that old yet
        removed = await dispatcher.prune(before=time.time() + 1, batch=2)
    receiver.hang.discard("/p-pending")

    assert removed == 3
    for did in finished:
        assert not await redis.exists(keys.delivery(did), keys.delivery_attempts(did))
    assert await redis.zrange(keys.DELIVERIES, 0, -1) == [pending]
    assert await redis.zrange(deliveries_in_state("dead"), 0, -1) == []
    assert await redis.zrange(keys.deliveries_by_room("p-ok"), 0, -1) == []
    counts = await redis.hgetall(keys.DELIVERY_COUNTS)
    assert {k: int(v) for k, v in counts.items()} == {"pending": 1, "delivered": 0, "dead": 0}
    assert [d["delivery_id"] for d in (await listing(stack))["deliveries"]] == [pending]


async def _settled(redis: Redis, ids: list[str]) -> None:
    from tests.support.api import eventually

    await eventually(lambda: settled(redis, ids), what=f"{len(ids)} deliveries settled")


async def _metrics(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http, http.get(f"{stack.url}/metrics") as resp:
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
