"""Rooms scheduled ahead (`start_at`): created at their time, once, moved or cancelled on request."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from emulator.server import Emulator
from tests.support.api import (
    LK_KEY,
    LK_SECRET,
    Api,
    eventually,
    livekit_calls,
    livekit_rooms,
    minimal_request,
)
from tests.support.procs import roomkeeper_env, worker_process
from tests.support.servers import Receiver, RedisServer
from tests.support.stack import Stack, make_settings, run_api, run_stack
from worker import keys
from worker.rooms.create import job_request
from worker.rooms.request import parse_create_room
from worker.rooms.scheduled import pack, unpack

LEAD_ZERO = {"schedule_lead": 0.0}


@pytest.fixture
async def sched(
    redis_server: RedisServer, emulator: Emulator, redis: Redis
) -> AsyncIterator[Stack]:
    """The stack with no lead: a scheduled room is created at its start_at itself."""
    settings = make_settings(redis_server.url, emulator.url, **LEAD_ZERO)
    async with run_stack(settings, emulator) as s:
        yield s


def events_of(receiver: Receiver, room_id: str) -> list[str]:
    return [e["event"] for e in receiver.events() if e.get("room", {}).get("room_id") == room_id]


async def job_status(api: Api, job_id: str) -> dict[str, Any]:
    status, body = await api.post("/auth/job/status", {"job_ids": [job_id]})
    assert status == 200, body
    job: dict[str, Any] = body["jobs"][0]
    return job


async def schedule(api: Api, room_id: str, start_at: Any, **extra: Any) -> dict[str, Any]:
    status, body = await api.post(
        "/auth/room/create", {**minimal_request(room_id, **extra), "start_at": start_at}
    )
    assert status == 202 and body["status"] is True and body["msg"] == "scheduled", body
    reply: dict[str, Any] = body
    return reply


@pytest.mark.slow  # real-time waits or an injected fault
async def test_a_room_scheduled_ahead_is_absent_until_its_start_then_created_and_announced_in_order(
    sched: Stack, receiver: Receiver, redis: Redis
) -> None:
    start_at = int(time.time()) + 5
    hook = receiver.at("/hook")
    reply = await schedule(sched.api, "monday", start_at, webhook_url=hook)
    assert reply["start_at"] == start_at and reply["job_id"]

    assert "monday" not in await livekit_rooms(sched.emulator.url)
    job = await job_status(sched.api, reply["job_id"])
    assert job["state"] == "scheduled" and job["start_at"] == start_at
    _, active = await sched.api.post("/auth/room/isRoomActive", {"room_id": "monday"})
    assert active["status"] is False and active["msg"] == "room is scheduled", active
    await receiver.wait_for(lambda r: "room_scheduled" in events_of(receiver, "monday"))
    announced = next(e for e in receiver.events() if e["event"] == "room_scheduled")
    assert announced["start_at"] == str(start_at) and announced["room"]["room_id"] == "monday"

    calls = await eventually(
        lambda: livekit_calls(sched.emulator.url, "CreateRoom"), timeout=10, what="CreateRoom"
    )
    assert len(calls) == 1
    assert start_at <= calls[0]["at"] <= start_at + 1.0, (calls[0]["at"], start_at)
    assert "monday" in await livekit_rooms(sched.emulator.url)
    await receiver.wait_for(lambda r: "room_created" in events_of(receiver, "monday"))
    assert events_of(receiver, "monday")[:2] == ["room_scheduled", "room_created"]

    done = await eventually(
        lambda: _state(sched.api, reply["job_id"], "complete"), what="job complete"
    )
    creation = done["room_info"]["creation_time"]
    assert creation >= start_at
    # The empty timeout counts from the real creation, not from the schedule.
    timers = await redis.zrange(keys.schedule_due(keys.TIMERS), 0, -1, withscores=True)
    empty = [score for member, score in timers if member.startswith("empty|monday|")]
    assert len(empty) == 1
    counted_from = empty[0] / 1000 - 1800  # the session's real start, not the schedule's write
    assert start_at <= counted_from <= calls[0]["at"] + 1.0 and int(counted_from) == creation
    assert await redis.exists(keys.scheduled("monday")) == 0
    assert await redis.zcard(keys.SCHEDULED_BY_START) == 0


async def _state(api: Api, job_id: str, state: str) -> dict[str, Any] | None:
    job = await job_status(api, job_id)
    return job if job["state"] == state else None


@pytest.mark.slow  # real-time waits or an injected fault
async def test_a_schedule_whose_room_is_live_at_its_time_completes_with_that_room(
    sched: Stack,
) -> None:
    reply = await schedule(sched.api, "clash", int(time.time()) + 2)
    live = await sched.api.create(minimal_request("clash"))  # created now, before its time

    done = await eventually(
        lambda: _state(sched.api, reply["job_id"], "complete"), what="schedule's job complete"
    )
    assert done["msg"] == "room already exists"
    assert done["room_info"]["sid"] == live["room_info"]["sid"]
    assert len(await livekit_calls(sched.emulator.url, "CreateRoom")) == 1


@pytest.mark.slow
async def test_a_schedule_outlives_a_worker_killed_before_its_start(
    redis_server: RedisServer, redis: Redis
) -> None:
    async with Emulator(LK_KEY, LK_SECRET, tick_interval=3600) as emu:
        env = roomkeeper_env(redis_server.url, emu.url, ROOMKEEPER_SCHEDULE_LEAD="0")
        settings = make_settings(redis_server.url, emu.url, **LEAD_ZERO)
        async with run_api(settings) as url:
            api = Api(url)
            async with worker_process(env, "doomed") as doomed:
                # Far enough ahead for the next worker to be up before it is due.
                start_at = int(time.time()) + 8
                reply = await schedule(api, "durable", start_at)
                doomed.signal(signal.SIGKILL)
                doomed.wait(10)
            assert time.time() < start_at  # killed between scheduling and the start
            assert (
                await redis.zscore(keys.schedule_due(keys.SCHEDULED_ROOMS), "durable")
                == start_at * 1000
            )
            async with worker_process(env, "heir"):
                calls = await eventually(
                    lambda: livekit_calls(emu.url, "CreateRoom"), timeout=15, what="CreateRoom"
                )
                assert start_at <= calls[0]["at"] <= start_at + 1.0
                await eventually(
                    lambda: _state(api, reply["job_id"], "complete"), what="created by the heir"
                )
            await api.close()


async def test_end_room_on_a_scheduled_room_cancels_it_and_nothing_is_created(
    sched: Stack, receiver: Receiver, redis: Redis
) -> None:
    start_at = int(time.time()) + 2
    reply = await schedule(sched.api, "called-off", start_at, webhook_url=receiver.at("/hook"))
    _, ended = await sched.api.post("/auth/room/endRoom", {"room_id": "called-off"})
    assert ended["status"] is True and ended["msg"] == "scheduled room cancelled", ended
    await receiver.wait_for(lambda r: "room_cancelled" in events_of(receiver, "called-off"))
    assert (await job_status(sched.api, reply["job_id"]))["state"] == "cancelled"
    _, again = await sched.api.post("/auth/room/endRoom", {"room_id": "called-off"})
    assert again["status"] is False, again  # nothing left to end

    # Past its start time, a worker that would have created it has nothing to do.
    await eventually(lambda: _past(start_at + 1), timeout=5, what="past the start time")
    assert await livekit_calls(sched.emulator.url, "CreateRoom") == []
    assert await redis.zcard(keys.schedule_due(keys.SCHEDULED_ROOMS)) == 0
    assert events_of(receiver, "called-off") == ["room_scheduled", "room_cancelled"]


async def _past(t: float) -> bool:
    return time.time() > t


async def test_scheduling_again_with_a_new_start_at_moves_the_one_schedule(
    sched: Stack, receiver: Receiver, redis: Redis
) -> None:
    hook = receiver.at("/hook")
    first = int(time.time()) + 3600
    moved_to = int(time.time()) + 3
    a = await schedule(sched.api, "moved", first, webhook_url=hook)
    await schedule(sched.api, "moved", first + 60, webhook_url=hook)
    await schedule(sched.api, "moved", first, webhook_url=hook)  # back: news all the same
    b = await schedule(sched.api, "moved", moved_to, webhook_url=hook)
    assert a["job_id"] == b["job_id"] and b["start_at"] == moved_to
    await receiver.wait_for(lambda r: events_of(receiver, "moved").count("room_scheduled") == 4)
    announced = [e for e in receiver.events() if e["event"] == "room_scheduled"]
    assert [e["start_at"] for e in announced] == [
        str(t) for t in (first, first + 60, first, moved_to)
    ]
    assert len({e["id"] for e in announced}) == 4  # receivers dedupe by id: each is new
    _, listed = await sched.api.post("/auth/room/fetchScheduledRooms", {})
    assert [(r["room_id"], r["start_at"]) for r in listed["rooms"]] == [("moved", moved_to)]

    calls = await eventually(
        lambda: livekit_calls(sched.emulator.url, "CreateRoom"), timeout=10, what="CreateRoom"
    )
    assert moved_to <= calls[0]["at"] <= moved_to + 1.0
    await receiver.wait_for(lambda r: "room_created" in events_of(receiver, "moved"))
    assert len(await livekit_calls(sched.emulator.url, "CreateRoom")) == 1


async def test_twenty_concurrent_schedules_of_one_room_are_one_schedule(
    sched: Stack, receiver: Receiver, redis: Redis
) -> None:
    start_at = int(time.time()) + 3600
    replies = await asyncio.gather(
        *(
            schedule(sched.api, "crowded", start_at, webhook_url=receiver.at("/hook"))
            for _ in range(20)
        )
    )
    assert len({r["job_id"] for r in replies}) == 1
    assert await redis.zcard(keys.schedule_due(keys.SCHEDULED_ROOMS)) == 1
    assert await redis.zcard(keys.SCHEDULED_BY_START) == 1
    await receiver.wait_for(lambda r: "room_scheduled" in events_of(receiver, "crowded"))
    await eventually(lambda: _deliveries_settled(redis), what="deliveries settled")
    assert events_of(receiver, "crowded") == ["room_scheduled"]


async def _deliveries_settled(redis: Redis) -> bool:
    return await redis.zcard(keys.schedule_due(keys.DELIVERY_QUEUES)) == 0


@pytest.mark.parametrize(
    ("start_at", "msg"),
    [
        ("soon", "start_at: must be unix seconds (an integer, or a string of digits)"),
        (True, "start_at: must be unix seconds (an integer, or a string of digits)"),
        (-5, "start_at: must be unix seconds (an integer, or a string of digits)"),
        (1.5e9 + 0.5, "start_at: must be unix seconds (an integer, or a string of digits)"),
        ({"at": 1}, "start_at: must be unix seconds (an integer, or a string of digits)"),
        (int(time.time()) + 401 * 86400, "start_at: must be at most 400 days ahead"),
    ],
    # Fixed ids: a time-derived one would differ between pytest-xdist's workers.
    ids=["word", "bool", "negative", "fraction", "object", "too-far-ahead"],
)
async def test_bad_start_at_values_are_refused_naming_the_field(
    sched: Stack, redis: Redis, start_at: Any, msg: str
) -> None:
    status, body = await sched.api.post(
        "/auth/room/create", {**minimal_request("refused"), "start_at": start_at}
    )
    assert status == 200 and body == {
        "status": False,
        "msg": msg,
        "status_code": "INVALID_PARAMETERS",
    }
    status, bulk = await sched.api.post(
        "/auth/room/createBulk", {"rooms": [{**minimal_request("refused"), "startAt": start_at}]}
    )
    assert status == 202, bulk
    assert bulk["results"] == [{"room_id": "refused", "accepted": False, "msg": msg}]
    assert await redis.exists(keys.scheduled("refused")) == 0


async def test_start_at_spellings_and_a_past_start_at_creates_at_once(
    sched: Stack, redis: Redis
) -> None:
    later = int(time.time()) + 3600
    status, camel = await sched.api.post(
        "/auth/room/create", {**minimal_request("camel"), "startAt": str(later)}
    )
    assert status == 202 and camel["msg"] == "scheduled" and camel["start_at"] == later, camel
    now = await sched.api.create({**minimal_request("past"), "start_at": 1})
    assert now["msg"] == "success" and now["room_info"]["name"] == "past"
    assert await redis.exists(keys.scheduled("past")) == 0


async def test_bulk_schedules_and_lists_them_by_start_time_in_pages(
    sched: Stack, redis: Redis
) -> None:
    base = int(time.time()) + 3600
    rooms = [{**minimal_request(f"r{i:02d}"), "start_at": base + (i % 5) * 60} for i in range(12)]
    rooms.append(minimal_request("right-now"))
    status, body = await sched.api.post("/auth/room/createBulk", {"rooms": rooms})
    assert status == 202
    results = body["results"]
    assert all(r["accepted"] and r["msg"] == "scheduled" for r in results[:12]), results
    assert results[12]["accepted"] and "msg" not in results[12]
    seen: list[tuple[int, str]] = []
    cursor = ""
    while True:
        _, page = await sched.api.post(
            "/auth/room/fetchScheduledRooms", {"limit": 5, "cursor": cursor}
        )
        seen += [(r["start_at"], r["room_id"]) for r in page["rooms"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == sorted((r["start_at"], r["room_id"]) for r in rooms[:12])
    _, window = await sched.api.post(
        "/auth/room/fetchScheduledRooms", {"from": base + 60, "to": base + 120}
    )
    assert {r["start_at"] for r in window["rooms"]} == {base + 60, base + 120}
    _, some = await sched.api.post(
        "/auth/room/fetchScheduledRooms", {"room_ids": ["r07", "r01", "nobody"]}
    )
    assert [r["room_id"] for r in some["rooms"]] == ["r01", "r07"]


@pytest.mark.slow  # real-time waits or an injected fault
async def test_schedules_survive_a_redis_crash_with_aof_and_are_created_on_time(
    emulator: Emulator, receiver: Receiver
) -> None:
    server = RedisServer(appendonly=True)
    server.start()
    try:
        settings = make_settings(server.url, emulator.url, **LEAD_ZERO)
        async with run_stack(settings, emulator) as stack:
            start_at = int(time.time()) + 6
            hook = receiver.at("/hook")
            replies = [
                await schedule(stack.api, f"aof-{i}", start_at, webhook_url=hook) for i in range(3)
            ]
            server.stop(signal.SIGKILL)  # a crash, not a clean shutdown
            server.start()
            assert time.time() < start_at
            calls = await eventually(
                lambda: _created(stack.emulator.url, 3), timeout=20, what="3 rooms created"
            )
            assert all(start_at <= c["at"] <= start_at + 2.0 for c in calls), calls
            for reply in replies:
                await eventually(
                    lambda r=reply: _state(stack.api, r["job_id"], "complete"),
                    timeout=10,
                    what="job complete",
                )
    finally:
        server.cleanup()


async def _created(url: str, n: int) -> list[dict[str, Any]] | None:
    calls = await livekit_calls(url, "CreateRoom")
    return calls if len(calls) >= n else None


def test_a_scheduled_request_packs_small_and_unpacks_to_the_same_request() -> None:
    request = {**minimal_request("zah-1"), "max_participants": 12, "empty_timeout": 600}
    request["metadata"] |= {"room_title": "Ünïcode ✓", "extra_data": {"course": "MA-101"}}
    body = job_request(parse_create_room(request))
    packed = pack(body)
    assert unpack(packed) == json.loads(body)
    assert len(packed) < len(body) / 4


@pytest.mark.parametrize(
    "title", ["plain", 'quote " back\\slash tab\t del\x7f ctl\x01', "Ünïcode ✓ 😀"]
)
def test_a_job_request_is_the_text_json_writes_whatever_it_holds(title: str) -> None:
    # The stored request (and so every packed schedule) must not change with the writer.
    request = minimal_request("zah-2")
    request["metadata"] |= {"room_title": title, "extra_data": {"k": title}}
    text = job_request(parse_create_room(request))
    fields = json.loads(text)
    assert fields["room_id"] == "zah-2"
    assert json.loads(fields["metadata"])["room_title"] == title
    assert text == json.dumps(fields, separators=(",", ":"))


def test_requests_packed_by_earlier_releases_still_unpack() -> None:
    # Recorded once: a change to the preset dictionary would strand every stored schedule.
    stored = "z1:ePnVZ8+jq0Yu3AzpXKb5JpZkAMMe6AwAZU4u1g=="
    assert unpack(stored) == {
        "room_id": "r1",
        "max_participants": 0,
        "empty_timeout": 1800,
        "room_duration": 0,
        "webhook_url": None,
        "metadata": '{"room_title":"Maths"}',
    }


async def test_an_unreadable_schedule_record_holds_up_no_other_room(
    sched: Stack, redis: Redis
) -> None:
    start_at = int(time.time()) + 3
    # A record no release could have written (say, a hand edit): it must not block its batch.
    await redis.hset(
        keys.scheduled("broken"),
        mapping={
            "job_id": "j-broken",
            "start_at": start_at,
            "idx": "x",
            "req": "z1:!!",
            "event_id": "e",
        },
    )
    await redis.zadd(keys.schedule_due(keys.SCHEDULED_ROOMS), {"broken": start_at * 1000})
    reply = await schedule(sched.api, "healthy", start_at)
    calls = await eventually(
        lambda: livekit_calls(sched.emulator.url, "CreateRoom"), timeout=10, what="CreateRoom"
    )
    assert [c["room"] for c in calls] == ["healthy"]
    assert start_at <= calls[0]["at"] <= start_at + 1.0
    await eventually(lambda: _state(sched.api, reply["job_id"], "complete"), what="job complete")


@pytest.mark.slow  # real-time waits or an injected fault
async def test_rooms_due_faster_than_the_rate_limit_are_created_in_order_of_start_at(
    redis_server: RedisServer, emulator: Emulator, redis: Redis
) -> None:
    settings = make_settings(redis_server.url, emulator.url, livekit_max_rps=4.0, **LEAD_ZERO)
    async with run_stack(settings, emulator) as stack:
        first = int(time.time()) + 3
        # Three seconds' worth of starts, eight rooms each, against four creates a second.
        rooms = [
            {**minimal_request(f"wave{s}-{i}"), "start_at": first + s}
            for s in (2, 0, 1)
            for i in range(8)
        ]
        status, body = await stack.api.post("/auth/room/createBulk", {"rooms": rooms})
        assert status == 202 and all(r["msg"] == "scheduled" for r in body["results"]), body
        calls = await eventually(
            lambda: _created(stack.emulator.url, 24), timeout=20, what="24 rooms created"
        )
    order = [int(c["room"][4]) for c in sorted(calls, key=lambda c: c["at"])]
    assert order == sorted(order), order
    assert all(c["at"] >= first + int(c["room"][4]) for c in calls)  # none before its time
