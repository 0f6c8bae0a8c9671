"""Protecting receivers: the per-host circuit breaker and rate limit, event filters, replay by URL
and time, and the synchronous test send, through the real API, worker, Redis and receivers."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from livekit import api
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from standardwebhooks import Webhook

from emulator.server import Emulator
from tests.support.api import API_KEY, API_SECRET, WEBHOOK_SECRET, eventually, minimal_request
from tests.support.delivery import emit, record, settled
from tests.support.servers import Receiver
from tests.support.stack import Stack, make_settings, run_stack
from worker import keys
from worker.queue.schedule import Schedule
from worker.settings import Settings
from worker.webhooks.engine import SCHEDULE_NAME, Outbox
from worker.webhooks.hosts import BREAKER_OPEN, forget_idle_hosts, host_key, list_hosts
from worker.webhooks.log import replay_url


def _events(receiver: Receiver, path: str) -> list[str]:
    return [r.json["event"] for r in receiver.received if r.path == path]


async def _all_settled(redis: Redis, ids: list[str]) -> None:
    await eventually(lambda: settled(redis, ids), timeout=30, what=f"{len(ids)} settled")


async def _open_metric(stack: Stack, host: str) -> float | None:
    async with aiohttp.ClientSession() as http, http.get(f"{stack.url}/metrics") as resp:
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "roomkeeper_webhook_breaker_open" and sample.labels == {"host": host}:
                return sample.value
    return None


@pytest.mark.slow  # real-time waits or an injected fault
async def test_an_open_breaker_holds_a_down_host_to_its_probes_and_loses_nothing(
    settings: Settings, emulator: Emulator, redis: Redis, receiver: Receiver
) -> None:
    down = make_settings(
        settings.redis_url,
        settings.livekit_url,
        webhook_breaker_failures=5,
        webhook_breaker_probe=1.0,
        webhook_retry_schedule="0,0.2,0.5,1,1,1,1,1,1,1,1,1",
    )
    rooms = [f"brk{i:02d}" for i in range(30)]
    for room in rooms:
        receiver.script[f"/{room}"] = [500] * 10_000
    host = host_key(receiver.url)
    async with run_stack(down, emulator) as stack:
        status, body = await stack.api.post(
            "/auth/room/createBulk",
            {"rooms": [minimal_request(r, webhook_url=receiver.at(f"/{r}")) for r in rooms]},
        )
        assert status == 202 and body["status"] is True, body
        await eventually(
            lambda: _open_metric(stack, host), timeout=15, what="the breaker open in /metrics"
        )
        # Long enough for several probes to go out while the host stays down.
        await eventually(lambda: _held_and_probed(stack, receiver, 4), timeout=15, what="4 probes")
        healed_at = time.time()
        for room in rooms:
            receiver.script[f"/{room}"].clear()

        def all_in_order(got: list[Any]) -> bool:
            return all(
                _events(receiver, f"/{r}")[-2:] == ["room_created", "room_started"] for r in rooms
            )

        await receiver.wait_for(all_in_order, timeout=30)
        dead = (await stack.api.post("/auth/webhook/deliveries", {"state": "dead"}))[1]
        assert dead["deliveries"] == [], dead
        assert await eventually(lambda: _closed(stack, host), what="the metric cleared")

    down_hits = sorted(r.at for r in receiver.received if r.at < healed_at)
    opened = down_hits[4]  # the 5th failure opened it
    in_flight = [t for t in down_hits[5:] if t < opened + 0.5]
    probes = [t for t in down_hits[5:] if t >= opened + 0.5]
    print(
        f"breaker: {len(down_hits)} attempts while down for {healed_at - opened:.1f} s after "
        f"it opened: 5 to open it, {len(in_flight)} in flight, {len(probes)} probes"
    )
    assert len(probes) <= int(healed_at - opened) + 1
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(probes)), probes
    for room in rooms:
        events = _events(receiver, f"/{room}")
        assert events.count("room_created") >= 1
        first_ok = [e for e in events if e == "room_created"]
        assert events.index("room_started") > events.index("room_created"), events
        assert first_ok


async def _held_and_probed(stack: Stack, receiver: Receiver, probes: int) -> bool:
    """The deliveries API names the breaker for a held delivery, and `probes` probes went."""
    pending = (await stack.api.post("/auth/webhook/deliveries", {"state": "pending"}))[1]
    held = [d for d in pending["deliveries"] if d.get("reason") == BREAKER_OPEN]
    hits = sorted(r.at for r in receiver.received)
    return bool(held) and len(hits) >= 5 and (hits[-1] - hits[4]) >= probes - 0.5


async def _closed(stack: Stack, host: str) -> bool:
    return await _open_metric(stack, host) is None


@pytest.mark.slow  # real-time waits or an injected fault
async def test_the_host_rate_limit_spreads_a_burst_and_delivers_it_all(
    settings: Settings, emulator: Emulator, redis: Redis, receiver: Receiver
) -> None:
    paced = make_settings(settings.redis_url, settings.livekit_url, webhook_host_rps=20)
    async with run_stack(paced, emulator):
        ids = []
        for i in range(100):
            for _, dids in await emit(redis, paced, f"rate{i:03d}", receiver.at(f"/r{i}")):
                ids.extend(dids)
        await _all_settled(redis, ids)

    arrivals = sorted(r.at for r in receiver.received)
    busiest = max(sum(1 for t in arrivals if a <= t < a + 1.0) for a in arrivals)
    print(
        f"host rate 20/s: 100 deliveries over {arrivals[-1] - arrivals[0]:.1f} s, busiest {busiest}"
    )
    assert busiest <= 25
    assert len(arrivals) == 100
    states = [(await record(redis, d))["state"] for d in ids]
    assert states == ["delivered"] * 100
    attempts = [len((await record(redis, d))["attempt_log"]) for d in ids]
    assert attempts == [1] * 100  # being held cost no attempt


async def test_retry_after_lowers_the_hosts_rate_for_a_while(
    stack: Stack, redis: Redis, receiver: Receiver
) -> None:
    receiver.script["/busy"] = [(429, {"Retry-After": "1"})]
    ((_, (did,)),) = await emit(redis, stack.settings, "busy", receiver.at("/busy"))
    await _all_settled(redis, [did])
    (view,), _ = await list_hosts(redis, stack.settings)
    assert view.host == host_key(receiver.url)
    assert view.rps == stack.settings.webhook_host_rps / 2
    assert view.lowered_until is not None and view.lowered_until >= time.time() + 20


async def test_a_rooms_event_filter_delivers_exactly_the_listed_events(
    stack: Stack, receiver: Receiver
) -> None:
    request = minimal_request("filtered", webhook_url=receiver.at("/f"))
    request["metadata"]["webhookEvents"] = ["room_created", "session_ended"]
    created = await stack.api.create(request)
    assert created["status"] is True, created
    for who in ("ann", "bob"):
        await stack.lk("rooms/filtered/participants", "POST", {"identity": who})
    await stack.lk("rooms/filtered/participants/ann", "DELETE")
    _status, ended = await stack.api.post("/auth/room/endRoom", {"room_id": "filtered"})
    assert ended["status"] is True, ended
    unfiltered = minimal_request("witness", webhook_url=receiver.at("/w"))
    await stack.api.create(unfiltered)
    await stack.lk("rooms/witness/participants", "POST", {"identity": "cy"})
    await receiver.wait_for(lambda got: "participant_joined" in _events(receiver, "/w"))
    await receiver.wait_for(lambda got: "session_ended" in _events(receiver, "/f"))

    assert _events(receiver, "/f") == ["room_created", "session_ended"]


async def test_the_global_targets_filter_delivers_exactly_its_events(
    settings: Settings, emulator: Emulator, redis: Redis, receiver: Receiver
) -> None:
    glob = make_settings(
        settings.redis_url,
        settings.livekit_url,
        webhook_url=receiver.at("/global"),
        webhook_events="room_created,session_ended",
    )
    async with run_stack(glob, emulator) as stack:
        await stack.api.create(minimal_request("both", webhook_url=receiver.at("/own")))
        await stack.lk("rooms/both/participants", "POST", {"identity": "ann"})
        await stack.lk("rooms/both/participants/ann", "DELETE")
        await stack.api.post("/auth/room/endRoom", {"room_id": "both"})
        await receiver.wait_for(lambda got: "session_ended" in _events(receiver, "/own"))
        await receiver.wait_for(lambda got: "session_ended" in _events(receiver, "/global"))

    assert _events(receiver, "/global") == ["room_created", "session_ended"]
    own = _events(receiver, "/own")
    assert {"participant_joined", "participant_left"} <= set(own)


async def test_unknown_event_names_are_refused_at_create(stack: Stack) -> None:
    request = minimal_request("typo", webhook_events=["room_created", "room_craeted"])
    status, body = await stack.api.post("/auth/room/create", request)
    assert status == 200 and body["status"] is False, body
    assert body["msg"].startswith("metadata.webhook_events.1: unknown event 'room_craeted'")
    status, body = await stack.api.post(
        "/auth/room/create", minimal_request("e", webhook_events=[])
    )
    assert body["msg"].startswith("metadata.webhook_events: must list at least one event"), body


@pytest.fixture
async def tolerant(settings: Settings, emulator: Emulator, redis: Redis) -> AsyncIterator[Stack]:
    """A stack whose breaker does not open for the many failures a replay test makes."""
    lenient = make_settings(
        settings.redis_url, settings.livekit_url, webhook_breaker_failures=10_000
    )
    async with run_stack(lenient, emulator) as stack:
        yield stack


async def test_replay_by_url_and_time_resends_only_that_urls_range_with_the_same_ids(
    tolerant: Stack, redis: Redis, receiver: Receiver
) -> None:
    stack = tolerant
    for path in ("/a", "/b"):
        receiver.script[path] = [500] * 40
    early = await emit(redis, stack.settings, "rep1", receiver.at("/a"))
    other = await emit(redis, stack.settings, "rep2", receiver.at("/b"))
    await _all_settled(redis, [d for _, ds in early + other for d in ds])
    since = time.time()
    late = await emit(redis, stack.settings, "rep3", receiver.at("/a"), count=2)
    late_other = await emit(redis, stack.settings, "rep4", receiver.at("/b"))
    await _all_settled(redis, [d for _, ds in late + late_other for d in ds])
    until = time.time()
    after = await emit(redis, stack.settings, "rep5", receiver.at("/a"))
    await _all_settled(redis, after[0][1])
    receiver.script.clear()  # the receivers are back
    before = len(receiver.received)

    _status, body = await stack.api.post(
        "/auth/webhook/redeliver", {"url": receiver.at("/a"), "since": since, "until": until}
    )
    late_ids = [d for _, ds in late for d in ds]
    await _all_settled(redis, late_ids)

    assert body["queued"] == 2 and body["delivery_ids"] == late_ids, body
    assert body["next_cursor"] is None
    resent = receiver.received[before:]
    assert [r.headers["webhook-id"] for r in resent] == [e for e, _ in late]
    assert {r.path for r in resent} == {"/a"}


async def test_replay_of_all_a_urls_deliveries_resends_its_delivered_ones_only(
    stack: Stack, redis: Redis, receiver: Receiver
) -> None:
    since = time.time()
    mine = await emit(redis, stack.settings, "all1", receiver.at("/mine"), count=2)
    theirs = await emit(redis, stack.settings, "all2", receiver.at("/theirs"), count=2)
    await _all_settled(redis, [d for _, ds in mine + theirs for d in ds])
    before = len(receiver.received)

    _status, body = await stack.api.post(
        "/auth/webhook/redeliver", {"url": receiver.at("/mine"), "since": since, "state": "all"}
    )
    mine_ids = [d for _, ds in mine for d in ds]
    await eventually(lambda: len(receiver.received) >= before + 2, what="the replay")
    await _all_settled(redis, mine_ids)

    assert body["queued"] == 2 and body["delivery_ids"] == mine_ids, body
    resent = receiver.received[before:]
    assert [r.headers["webhook-id"] for r in resent] == [e for e, _ in mine]
    assert {r.path for r in resent} == {"/mine"}


async def test_replay_is_bounded_and_goes_on_from_its_cursor(
    tolerant: Stack, redis: Redis, receiver: Receiver
) -> None:
    stack = tolerant
    receiver.script["/many"] = [500] * 20
    events = await emit(redis, stack.settings, "many", receiver.at("/many"), count=5)
    ids = [d for _, ds in events for d in ds]
    await _all_settled(redis, ids)
    outbox = Outbox(stack.settings, Schedule(redis, SCHEDULE_NAME))
    url = receiver.at("/many")

    first = await replay_url(redis, outbox, url, since=0, limit=3)
    second = await replay_url(redis, outbox, url, since=0, cursor=first.next_cursor, limit=3)

    assert first.queued == ids[:3] and first.next_cursor == ids[2]
    assert second.queued == ids[3:] and second.next_cursor is None


async def test_a_test_send_reports_the_receivers_answer_signed_both_ways(
    stack: Stack, receiver: Receiver
) -> None:
    receiver.script["/probe"] = [418]
    status, body = await stack.api.post("/auth/webhook/test", {"url": receiver.at("/probe")})

    assert status == 200 and body["status"] is True, body
    assert body["delivered"] is False
    assert body["attempt"]["status"] == 418
    assert body["attempt"]["response"] == "scripted 418"
    assert body["attempt"]["duration_ms"] >= 0
    (hit,) = [r for r in receiver.received if r.path == "/probe"]
    assert hit.json["event"] == "webhook_test" and hit.json["id"] == body["event_id"]
    Webhook(WEBHOOK_SECRET).verify(hit.body, hit.headers)
    api.WebhookReceiver(api.TokenVerifier(API_KEY, API_SECRET)).receive(
        hit.body.decode(), hit.headers["Authorization"]
    )
    status, body = await stack.api.post("/auth/webhook/test", {"url": receiver.at("/fine")})
    assert body["delivered"] is True and body["attempt"]["status"] == 200


async def test_a_test_send_to_a_blocked_address_reports_the_ssrf_refusal(stack: Stack) -> None:
    # The guard refuses before a socket exists, so nothing is sent to this address.
    status, body = await stack.api.post("/auth/webhook/test", {"url": "http://10.0.0.1/hook"})

    assert status == 200 and body["status"] is True, body
    assert body["delivered"] is False
    assert "status" not in body["attempt"]
    assert body["attempt"]["error"].startswith("refused by the SSRF guard"), body


async def test_410s_from_many_rooms_stop_only_their_queues_and_never_open_the_breaker(
    stack: Stack, redis: Redis, receiver: Receiver
) -> None:
    gone_rooms = [f"gone{i:02d}" for i in range(25)]  # more than the 20 failures that open it
    for room in gone_rooms:
        receiver.script[f"/{room}"] = [410]
    ids = []
    for room in gone_rooms:
        for _, dids in await emit(redis, stack.settings, room, receiver.at(f"/{room}"), count=2):
            ids.extend(dids)
    await _all_settled(redis, ids)
    ((_, (fine,)),) = await emit(redis, stack.settings, "fine", receiver.at("/fine"))
    await _all_settled(redis, [fine])

    states = [(await record(redis, d))["state"] for d in ids]
    assert states == ["dead"] * 50  # each 410 and the event behind it
    assert (await record(redis, fine))["state"] == "delivered"
    (view,), _ = await list_hosts(redis, stack.settings)
    assert (view.state, view.failures) == ("closed", 0)


async def test_hosts_idle_for_the_retention_period_are_forgotten(
    stack: Stack, redis: Redis, receiver: Receiver
) -> None:
    ((_, (did,)),) = await emit(redis, stack.settings, "kept", receiver.at("/kept"))
    await _all_settled(redis, [did])
    # One transaction: a prune turn of the worker's between these writes would forget the host
    # half-written and leave the rest for no one to forget.
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(keys.HOSTS, {"https://old.example.org:443": 1_000})
        pipe.hset(keys.host("https://old.example.org:443"), mapping={"state": "open"})
        pipe.sadd(keys.HOSTS_OPEN, "https://old.example.org:443")
        await pipe.execute()

    # The worker's own prune turn (it runs after the delivery above) may forget it first.
    assert await forget_idle_hosts(redis, int((time.time() - 86400) * 1000)) in (0, 1)

    (view,), total = await list_hosts(redis, stack.settings)
    assert (view.host, total) == (host_key(receiver.url), 1)
    assert await redis.exists(keys.host("https://old.example.org:443"), keys.HOSTS_OPEN) == 0
