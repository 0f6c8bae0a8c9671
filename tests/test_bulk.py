"""`/auth/room/createBulk` and `/auth/job/status` through the real API, worker and emulator."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.support.api import Api, eventually, livekit_calls, livekit_rooms, minimal_request
from tests.support.servers import Receiver, RedisServer
from tests.support.stack import Stack, make_settings, run_api, run_stack, run_worker
from worker import keys
from worker.arqueue import JOB_KEY_PREFIX, deserialize_job

BULK = "/auth/room/createBulk"
STATUS = "/auth/job/status"


async def bulk(api: Api, rooms: list[Any]) -> dict[str, Any]:
    """A createBulk call that must be accepted (HTTP 202, status true)."""
    status, body = await api.post(BULK, {"rooms": rooms})
    assert status == 202 and body["status"] is True, (status, body)
    assert len(body["results"]) == len(rooms)
    return dict(body)


async def job_states(api: Api, job_ids: list[str]) -> list[dict[str, Any]]:
    status, body = await api.post(STATUS, {"job_ids": job_ids})
    assert status == 200 and body["status"] is True, body
    return list(body["jobs"])


async def all_settled(api: Api, job_ids: list[str]) -> list[dict[str, Any]] | None:
    jobs = await job_states(api, job_ids)
    return jobs if all(j["state"] in ("complete", "failed") for j in jobs) else None


async def settled(api: Api, job_ids: list[str], timeout: float = 30.0) -> list[dict[str, Any]]:
    """Poll job/status (every 0.1 s: a big status answer is not free) until every job is over."""
    last: list[dict[str, Any]] = []

    async def over() -> list[dict[str, Any]] | None:
        last[:] = await job_states(api, job_ids)
        return list(last) if all(j["state"] in ("complete", "failed") for j in last) else None

    return await eventually(
        over,
        timeout,
        "jobs settled",
        interval=0.1,
        describe=lambda: Counter(j["state"] for j in last),
    )


async def arq_idle(redis: Redis) -> bool:
    """No arq job queued or running (so a worker can stop without cutting one short)."""
    return await redis.zcard(keys.QUEUE_NAME) == 0 and not await redis.keys("arq:in-progress:*")


async def queued_arq_jobs(redis_server: RedisServer) -> AsyncIterator[list[str]]:
    """The create jobs each queued arq job carries (read as bytes: payloads are msgpack)."""
    raw = Redis.from_url(redis_server.url)
    try:
        for arq_id in await raw.zrange(keys.QUEUE_NAME, 0, -1):
            payload = await raw.get(JOB_KEY_PREFIX.encode() + arq_id)
            assert payload is not None, arq_id
            (job_ids,) = deserialize_job(payload)["a"]
            yield job_ids
    finally:
        await raw.aclose()


class CreatedEvents:
    """`room_created` bodies a receiver got, by room, parsed once each (polling stays cheap)."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.seen = 0
        self.by_room: Counter[str] = Counter()

    def count(self) -> Counter[str]:
        received = self.receiver.received
        for hit in received[self.seen :]:
            event = hit.json
            if hit.path == "/hook" and event["event"] == "room_created":
                self.by_room[event["room"]["room_id"]] += 1
        self.seen = len(received)
        return self.by_room

    async def wait(self, rooms: int, timeout: float = 30.0) -> Counter[str]:
        await self.receiver.wait_for(lambda _: len(self.count()) >= rooms, timeout)
        return self.count()


async def test_valid_rooms_are_created_and_invalid_ones_reported_with_reasons_in_order(
    stack: Stack, receiver: Receiver
) -> None:
    hook = {"webhook_url": receiver.at("/hook")}
    rooms: list[Any] = [
        minimal_request("mix-a", **hook),
        {"room_id": "mix-untitled", "metadata": {"room_title": " ", "room_features": {}}},
        minimal_request("mix-b", **hook),
        42,
        minimal_request("bad id!"),
        {"room_id": "mix-neg", "max_participants": -1, "metadata": {"room_title": "x"}},
        minimal_request("mix-c", **hook),
    ]

    body = await bulk(stack.api, rooms)

    results = body["results"]
    assert [r["accepted"] for r in results] == [True, False, True, False, False, False, True]
    assert [r["room_id"] for r in results] == [
        "mix-a", "mix-untitled", "mix-b", "", "bad id!", "mix-neg", "mix-c",
    ]  # fmt: skip
    assert results[1]["msg"] == "metadata.room_title: must not be empty"
    assert results[3]["msg"] == "request body must be a JSON object"
    assert results[4]["msg"].startswith("room_id: must be 1-256 characters")
    assert results[5]["msg"] == (  # every broken rule of the room at once
        "max_participants: must be an integer >= 0; metadata.room_features: is required"
    )
    assert results[5]["errors"] == [
        "max_participants: must be an integer >= 0",
        "metadata.room_features: is required",
    ]
    job_ids = [r["job_id"] for r in results if r["accepted"]]
    assert len(set(job_ids)) == 3
    jobs = await settled(stack.api, job_ids)
    assert [(j["room_id"], j["state"]) for j in jobs] == [
        ("mix-a", "complete"),
        ("mix-b", "complete"),
        ("mix-c", "complete"),
    ]
    in_livekit = await livekit_rooms(stack.emulator.url)
    assert set(in_livekit) == {"mix-a", "mix-b", "mix-c"}
    assert [j["room_info"]["sid"] for j in jobs] == [
        in_livekit[n]["sid"] for n in ("mix-a", "mix-b", "mix-c")
    ]
    assert await CreatedEvents(receiver).wait(3) == dict.fromkeys(["mix-a", "mix-b", "mix-c"], 1)


async def test_a_room_id_repeated_in_one_call_is_rejected_after_its_first_use(
    stack: Stack,
) -> None:
    rooms = [minimal_request("twice"), minimal_request("once"), minimal_request("twice")]

    results = (await bulk(stack.api, rooms))["results"]

    assert results[0]["accepted"] and results[1]["accepted"]
    assert results[2] == {
        "room_id": "twice",
        "accepted": False,
        "msg": "room_id repeated in this call (first used at rooms[0])",
    }
    await eventually(lambda: all_settled(stack.api, [r["job_id"] for r in results[:2]]))
    calls = await livekit_calls(stack.emulator.url, "CreateRoom")
    assert Counter(c["room"] for c in calls) == {"twice": 1, "once": 1}


async def test_more_than_the_limit_none_or_no_list_is_invalid_and_queues_nothing(
    stack: Stack, redis: Redis
) -> None:
    too_many = [minimal_request(f"big-{i}") for i in range(1001)]
    cases = [
        ({"rooms": too_many}, "rooms: must hold 1 to 1000 items, not 1001"),
        ({"rooms": []}, "rooms: must hold 1 to 1000 items, not 0"),
        ({"rooms": {"room_id": "x"}}, "rooms: must be a list"),
        ({}, "rooms: is required"),
        ([minimal_request("x")], "request body must be a JSON object"),
    ]
    for payload, msg in cases:
        status, body = await stack.api.post(BULK, payload)
        assert status == 200
        assert body == {"status": False, "msg": msg, "status_code": "INVALID_PARAMETERS"}
    assert await redis.zcard(keys.QUEUED_JOBS) == 0
    assert await redis.keys(keys.room("*")) == []


async def test_an_active_room_is_reported_as_existing_and_not_created_again(
    stack: Stack, redis: Redis
) -> None:
    first = await stack.api.create(minimal_request("exists"))

    results = (await bulk(stack.api, [minimal_request("exists")]))["results"]

    assert results == [
        {
            "room_id": "exists",
            "accepted": False,
            "msg": "room already exists",
            "room_info": first["room_info"],
        }
    ]
    assert len(await livekit_calls(stack.emulator.url, "CreateRoom")) == 1
    await eventually(lambda: arq_idle(redis), what="arq idle")


async def test_a_room_already_queued_answers_with_its_pending_job(
    redis_server, emulator, redis
) -> None:
    settings = make_settings(redis_server.url, emulator.url)
    async with run_api(settings) as url:  # no worker: creates stay queued
        api = Api(url)
        try:
            first = (await bulk(api, [minimal_request("later")]))["results"][0]
            again = (await bulk(api, [minimal_request("later")]))["results"][0]
            jobs = await job_states(api, [first["job_id"]])
        finally:
            await api.close()

    assert again == {
        "room_id": "later",
        "accepted": True,
        "job_id": first["job_id"],
        "msg": "create already queued",
    }
    assert jobs == [{"job_id": first["job_id"], "room_id": "later", "state": "queued"}]
    # The arq job that will create it exists (the claim wrote it) and names this job.
    assert [job_ids async for job_ids in queued_arq_jobs(redis_server)] == [[first["job_id"]]]


async def test_a_full_queue_refuses_the_whole_call_and_accepts_nothing(
    redis_server, emulator, redis
) -> None:
    settings = make_settings(redis_server.url, emulator.url, queue_max_depth=5)
    async with run_api(settings) as url:
        api = Api(url)
        try:
            await bulk(api, [minimal_request(f"bp-{i}") for i in range(4)])

            status, refused = await api.post(
                BULK, {"rooms": [minimal_request("bp-x"), minimal_request("bp-y")]}
            )
            assert status == 200
            assert refused == {
                "status": False,
                "msg": "queue is full (4 waiting, limit 5); nothing was accepted, retry later",
                "status_code": "INTERNAL_SERVER_ERROR",
            }
            assert not await redis.exists(keys.room("bp-x"), keys.room("bp-y"))
            assert await redis.zcard(keys.QUEUED_JOBS) == 4

            last = (await bulk(api, [minimal_request("bp-4")]))["results"][0]
            assert last["accepted"] is True
            async with run_worker(settings):
                await eventually(
                    lambda: _names_are(emulator.url, {f"bp-{i}" for i in range(5)}),
                    what="the accepted rooms created",
                )
                await eventually(lambda: arq_idle(redis), what="arq idle")
        finally:
            await api.close()


async def _names_are(livekit_url: str, names: set[str]) -> bool:
    return set(await livekit_rooms(livekit_url)) == names


async def test_job_status_reports_each_state_in_request_order(stack: Stack) -> None:
    await stack.lk(
        "faults", "POST", {"method": "CreateRoom", "count": 1, "code": "invalid_argument"}
    )
    refused = (await bulk(stack.api, [minimal_request("st-refused")]))["results"][0]["job_id"]
    await eventually(lambda: all_settled(stack.api, [refused]))
    made = (await bulk(stack.api, [minimal_request("st-made")]))["results"][0]["job_id"]
    await eventually(lambda: all_settled(stack.api, [made]))

    jobs = await job_states(stack.api, [made, "no-such-job", refused])

    assert jobs[0]["state"] == "complete" and jobs[0]["room_id"] == "st-made"
    assert jobs[0]["room_info"]["name"] == "st-made"
    assert jobs[0]["room_info"]["sid"].startswith("RM_")
    assert jobs[1] == {
        "job_id": "no-such-job",
        "room_id": "",
        "state": "not_found",
        "msg": "no such job (unknown, or its record expired)",
    }
    assert jobs[2]["state"] == "failed" and jobs[2]["room_id"] == "st-refused"
    assert "livekit rejected it" in jobs[2]["msg"]


async def test_job_status_refuses_malformed_job_id_lists(stack: Stack) -> None:
    cases = [
        ({"job_ids": []}, "job_ids: must hold 1 to 1000 items, not 0"),
        ({"job_ids": ["x"] * 1001}, "job_ids: must hold 1 to 1000 items, not 1001"),
        ({"job_ids": "abc"}, "job_ids: must be a list"),
        ({"job_ids": ["ok", 7]}, "job_ids[1]: must be a string of 1 to 256 characters"),
        ({"job_ids": [""]}, "job_ids[0]: must be a string of 1 to 256 characters"),
    ]
    for payload, msg in cases:
        status, body = await stack.api.post(STATUS, payload)
        assert status == 200
        assert body == {"status": False, "msg": msg, "status_code": "INVALID_PARAMETERS"}


async def _deliveries_drained(redis: Redis) -> bool:
    return await redis.zcard(keys.schedule_due(keys.DELIVERY_QUEUES)) == 0


@pytest.mark.slow
async def test_livekit_failing_for_part_of_a_bulk_retries_and_creates_each_room_once(
    stack: Stack, receiver: Receiver, redis: Redis
) -> None:
    await stack.lk("config", "POST", {"webhook_urls": []})  # only room_created goes to the hook
    await stack.lk("faults", "POST", {"method": "CreateRoom", "count": 200, "code": "unavailable"})
    names = [f"flaky-{i}" for i in range(300)]

    results = (
        await bulk(stack.api, [minimal_request(n, webhook_url=receiver.at("/hook")) for n in names])
    )["results"]

    job_ids = [r["job_id"] for r in results]
    jobs = await settled(stack.api, job_ids)
    assert {j["state"] for j in jobs} == {"complete"}
    calls = await livekit_calls(stack.emulator.url, "CreateRoom")
    assert sum(c["status"] == 503 for c in calls) == 200
    assert Counter(c["room"] for c in calls if c["status"] == 200) == dict.fromkeys(names, 1)
    in_livekit = await livekit_rooms(stack.emulator.url)
    assert set(in_livekit) == set(names)
    assert len({r["sid"] for r in in_livekit.values()}) == 300
    events = CreatedEvents(receiver)
    await events.wait(300)
    await eventually(lambda: _deliveries_drained(redis), what="webhook queues drained")
    assert events.count() == dict.fromkeys(names, 1)  # each room's event once, no duplicate


async def test_job_status_shows_failures_only_for_rooms_whose_retries_ran_out(
    redis_server, emulator, redis
) -> None:
    # Three attempts per room (first + two retries); 30 rooms fail their first two rounds, and 15
    # of them their third: exactly those 15 must be failed, the other 15 complete.
    settings = make_settings(redis_server.url, emulator.url, create_retry_schedule="0.1,0.2")
    async with run_stack(settings, emulator) as stack:
        await stack.lk("faults", "POST", {"method": "CreateRoom", "count": 75})
        names = [f"out-{i}" for i in range(30)]
        results = (await bulk(stack.api, [minimal_request(n) for n in names]))["results"]
        job_ids = [r["job_id"] for r in results]

        jobs = await settled(stack.api, job_ids)

        calls = await livekit_calls(stack.emulator.url, "CreateRoom")
    failed = {j["room_id"] for j in jobs if j["state"] == "failed"}
    complete = {j["room_id"] for j in jobs if j["state"] == "complete"}
    assert len(failed) == 15 and len(complete) == 15
    assert {j["msg"] for j in jobs if j["state"] == "failed"} == {
        "can't create room: livekit unavailable"
    }
    statuses: dict[str, list[int]] = {}
    for call in calls:
        statuses.setdefault(call["room"], []).append(call["status"])
    for name in failed:
        assert statuses[name] == [503, 503, 503]  # every attempt the schedule allows, all failed
    for name in complete:
        assert statuses[name][-1] == 200 and statuses[name].count(200) == 1
    assert set(await livekit_rooms(stack.emulator.url)) == complete
