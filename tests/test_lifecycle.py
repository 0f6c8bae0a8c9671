"""Room lifecycle: LiveKit's events in, timers on time, ending once, reconciliation, the room API."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from livekit import api
from plugnmeet_sdk import PlugNMeet
from plugnmeet_sdk.schemas.data import UserInfo, UserMetadata
from plugnmeet_sdk.schemas.requests import (
    EndRoomRequest,
    FetchPastRoomsInfoRequest,
    GetActiveRoomInfoRequest,
    JoinRoomRequest,
    RoomStatusRequest,
)
from redis.asyncio import Redis
from standardwebhooks import Webhook

from emulator.server import Emulator
from tests.support.api import (
    API_KEY,
    API_SECRET,
    LK_KEY,
    LK_SECRET,
    WEBHOOK_SECRET,
    eventually,
    minimal_request,
    seed_request,
)
from tests.support.servers import Receiver, RedisServer
from tests.support.stack import Stack, make_settings, run_stack, run_worker
from worker import keys


def events_of(receiver: Receiver, room_id: str) -> list[str]:
    return [e["event"] for e in receiver.events() if e.get("room", {}).get("room_id") == room_id]


async def delete_calls(stack: Stack, room: str) -> list[dict[str, Any]]:
    calls = (await stack.lk(f"calls?method=DeleteRoom&room={room}"))["calls"]
    return [c for c in calls if c["room"] == room]


async def join(stack: Stack, room: str, identity: str) -> dict[str, Any]:
    return await stack.lk(f"rooms/{room}/participants", "POST", {"identity": identity})


async def state_of(redis: Redis, room_id: str) -> str | None:
    return await redis.hget(keys.room(room_id), "state")


async def test_full_story_through_the_python_sdk(stack: Stack, receiver: Receiver) -> None:
    sdk = PlugNMeet(stack.url, API_KEY, API_SECRET)
    created = await stack.api.create(seed_request("story", webhook_url=receiver.at("/hook")))
    sid = created["room_info"]["sid"]

    _, active = await sdk.isRoomActive(RoomStatusRequest(room_id="story"))
    assert active["status"] is True and active["is_active"] is True

    await join(stack, "story", "alice")
    await receiver.wait_for(lambda r: "participant_joined" in events_of(receiver, "story"))
    _, info = await sdk.getActiveRoomInfo(GetActiveRoomInfoRequest(room_id="story"))
    assert info["status"] is True, info
    assert info["room"]["room_info"]["sid"] == sid
    assert info["room"]["room_info"]["room_title"] == "Test room"
    assert [p["identity"] for p in info["room"]["participants_info"]] == ["alice"]
    joined = next(r for r in receiver.received if r.json["event"] == "participant_joined")
    assert joined.json["participant"]["identity"] == "alice"
    Webhook(WEBHOOK_SECRET).verify(joined.body, joined.headers)
    api.WebhookReceiver(api.TokenVerifier(API_KEY, API_SECRET)).receive(
        joined.body.decode(), joined.headers["Authorization"]
    )

    await stack.lk("rooms/story/participants/alice", "DELETE")
    await receiver.wait_for(lambda r: "participant_left" in events_of(receiver, "story"))
    _, ended = await sdk.endRoom(EndRoomRequest(room_id="story"))
    assert ended["status"] is True, ended

    assert "story" not in {r["name"] for r in (await stack.lk("rooms"))["rooms"]}
    await receiver.wait_for(lambda r: "room_finished" in events_of(receiver, "story"))
    story = events_of(receiver, "story")
    assert story.index("session_ended") < story.index("room_finished")
    assert story.count("session_ended") == 1
    _, inactive = await sdk.isRoomActive(RoomStatusRequest(room_id="story"))
    assert inactive["status"] is False and inactive["is_active"] is False
    _, past = await sdk.fetchPastRoomsInfo(FetchPastRoomsInfoRequest(room_ids=["story"]))
    assert past["status"] is True, past
    assert past["result"]["total_rooms"] == 1
    row = past["result"]["rooms_list"][0]
    assert row["room_sid"] == sid and row["room_id"] == "story"
    assert row["joined_participants"] == 1 and row["ended"] >= row["created"]


async def test_join_token_is_a_livekit_token_for_that_room(stack: Stack) -> None:
    sdk = PlugNMeet(stack.url, API_KEY, API_SECRET)
    await stack.api.create(minimal_request("tokens"))
    user = UserInfo(name="Ann", user_id="u-1", is_admin=True, user_metadata=UserMetadata())

    _, body = await sdk.getJoinToken(JoinRoomRequest(room_id="tokens", user_info=user))

    assert body["status"] is True, body
    claims = api.TokenVerifier(LK_KEY, LK_SECRET).verify(body["token"])
    assert claims.identity == "u-1" and claims.name == "Ann"
    assert claims.video.room == "tokens" and claims.video.room_join and claims.video.room_admin


async def test_join_token_for_an_inactive_room_says_create_it_first(stack: Stack) -> None:
    status, body = await stack.api.post(
        "/auth/room/getJoinToken",
        {"room_id": "nowhere", "user_info": {"name": "A", "user_id": "a", "is_admin": False}},
    )

    assert status == 200
    assert body == {
        "status": False,
        "msg": "room is not active. create room first",
        "status_code": "ROOM_NOT_ACTIVE",
    }


async def test_active_rooms_info_lists_every_live_room(stack: Stack) -> None:
    for name in ("one", "two"):
        await stack.api.create(minimal_request(name))
    await join(stack, "two", "bob")

    status, body = await stack.api.post("/auth/room/getActiveRoomsInfo", {})

    assert status == 200 and body["status"] is True
    rooms = {r["room_info"]["room_id"]: r for r in body["rooms"]}
    assert set(rooms) == {"one", "two"}
    assert [p["identity"] for p in rooms["two"]["participants_info"]] == ["bob"]


async def test_unknown_room_answers_room_not_found(stack: Stack) -> None:
    for route in ("getActiveRoomInfo", "endRoom"):
        status, body = await stack.api.post(f"/auth/room/{route}", {"room_id": "ghost"})
        assert (status, body["status"], body["status_code"], body["msg"]) == (
            200, False, "ROOM_NOT_FOUND", "room not found",
        )  # fmt: skip


async def test_ending_an_ended_room_answers_not_active_and_emits_nothing_more(
    stack: Stack, receiver: Receiver
) -> None:
    await stack.api.create(minimal_request("twice", webhook_url=receiver.at("/hook")))
    first = await stack.api.post("/auth/room/endRoom", {"room_id": "twice"})
    second = await stack.api.post("/auth/room/endRoom", {"room_id": "twice"})

    assert first[1]["status"] is True
    assert second[1]["status_code"] == "ROOM_NOT_ACTIVE"
    await receiver.wait_for(lambda r: "room_finished" in events_of(receiver, "twice"))
    assert events_of(receiver, "twice").count("session_ended") == 1
    assert len(await delete_calls(stack, "twice")) == 1


@pytest.fixture
async def slow_emulator() -> AsyncIterator[Emulator]:
    """An emulator whose own idle closing is out of the picture, so only roomkeeper ends rooms."""
    async with Emulator(LK_KEY, LK_SECRET, tick_interval=3600) as emu:
        yield emu


async def created_at_s(stack: Stack, room: str) -> float:
    """LiveKit's `creation_time_ms` of a live room, in seconds (what deadlines count from)."""
    return int((await stack.lk(f"rooms/{room}"))["creation_time_ms"]) / 1000


async def test_empty_timeout_ends_an_unjoined_room_after_its_deadline(
    redis_server: RedisServer, slow_emulator: Emulator, redis: Redis, receiver: Receiver
) -> None:
    settings = make_settings(redis_server.url, slow_emulator.url)
    async with run_stack(settings, slow_emulator) as stack:
        created = await stack.api.create(
            {**minimal_request("lonely", webhook_url=receiver.at("/hook")), "empty_timeout": 2}
        )
        deadline = await created_at_s(stack, "lonely") + 2
        assert int(deadline) == created["room_info"]["creation_time"] + 2

        calls = await eventually(
            lambda: delete_calls(stack, "lonely"), timeout=10, what="DeleteRoom"
        )

        assert calls[0]["at"] >= deadline
        await receiver.wait_for(lambda r: "session_ended" in events_of(receiver, "lonely"))
        ended = next(e for e in receiver.events() if e["event"] == "session_ended")
        assert ended["reason"] == "empty_timeout"
        assert await state_of(redis, "lonely") == "ended"


async def test_no_room_ends_before_a_deadline_with_a_fractional_second(
    redis_server: RedisServer, slow_emulator: Emulator
) -> None:
    # Rooms created at assorted points within their second: a deadline counted from LiveKit's
    # whole-second `creation_time` would fall up to a second before the real one.
    settings = make_settings(redis_server.url, slow_emulator.url)
    async with run_stack(settings, slow_emulator) as stack:
        deadlines: dict[str, float] = {}
        for i in range(5):
            room = f"fraction{i}"
            await stack.api.create({**minimal_request(room), "empty_timeout": 1})
            deadlines[room] = await created_at_s(stack, room) + 1
            await asyncio.sleep(0.17)  # spreads the creations over the second (not a sync)
        assert any(d % 1 >= 0.1 for d in deadlines.values()), deadlines

        for room, deadline in deadlines.items():
            calls = await eventually(lambda r=room: delete_calls(stack, r), what="DeleteRoom")
            assert calls[0]["at"] >= deadline, (room, calls[0]["at"] - deadline)


async def test_a_joined_room_survives_its_empty_timeout(
    redis_server: RedisServer, slow_emulator: Emulator, redis: Redis
) -> None:
    settings = make_settings(redis_server.url, slow_emulator.url)
    async with run_stack(settings, slow_emulator) as stack:
        created = await stack.api.create({**minimal_request("joined"), "empty_timeout": 1})
        await join(stack, "joined", "carol")
        await eventually(
            lambda: _joined(redis, "joined"), what="participant_joined applied to the room"
        )
        member = f"empty|joined|{created['room_info']['sid']}|"

        # The timer fires (and is removed) at its deadline; it must find the room joined.
        await eventually(lambda: _timer_gone(redis, member), timeout=5, what="empty timer fired")

        assert await state_of(redis, "joined") == "active"
        assert await delete_calls(stack, "joined") == []


async def _joined(redis: Redis, room_id: str) -> bool:
    return int(await redis.hget(keys.room(room_id), "joined") or 0) > 0


async def _timer_gone(redis: Redis, prefix: str) -> bool:
    members = await redis.zrange(keys.schedule_due(keys.TIMERS), 0, -1)
    return not any(m.startswith(prefix) for m in members)


@pytest.mark.slow
async def test_room_duration_ends_the_room_on_time_after_session_ending(
    redis_server: RedisServer, slow_emulator: Emulator, redis: Redis, receiver: Receiver
) -> None:
    settings = make_settings(redis_server.url, slow_emulator.url, session_ending_warnings="30,10")
    async with run_stack(settings, slow_emulator) as stack:
        request = minimal_request("timed", webhook_url=receiver.at("/hook"))
        request["metadata"]["room_features"] = {"room_duration": 1}
        created = await stack.api.create(request)
        await join(stack, "timed", "dave")  # a joined room is ended by its duration, not emptiness
        deadline = await created_at_s(stack, "timed") + 60
        assert int(deadline) == created["room_info"]["creation_time"] + 60

        calls = await eventually(lambda: delete_calls(stack, "timed"), timeout=90, what="end")

        assert calls[0]["at"] >= deadline
        await receiver.wait_for(lambda r: "session_ended" in events_of(receiver, "timed"))
        story = events_of(receiver, "timed")
        warnings = [e for e in receiver.events() if e["event"] == "session_ending"]
        assert [w["seconds_left"] for w in warnings] == [30, 10]
        assert story.index("session_ending") < story.index("session_ended")
        assert (
            next(e for e in receiver.events() if e["event"] == "session_ended")["reason"]
            == "room_duration"
        )


async def test_reconciliation_ends_a_room_deleted_behind_our_back(
    redis_server: RedisServer, redis: Redis, receiver: Receiver
) -> None:
    # No LiveKit webhooks at all: the lost room_finished is what reconciliation repairs.
    async with Emulator(LK_KEY, LK_SECRET, tick_interval=3600) as emu:
        settings = make_settings(redis_server.url, emu.url, reconcile_interval=0.5)
        async with run_stack(settings, emu) as stack:
            await stack.lk("config", "POST", {"webhook_urls": []})
            await stack.api.create(minimal_request("vanish", webhook_url=receiver.at("/hook")))
            async with api.LiveKitAPI(emu.url, LK_KEY, LK_SECRET) as lk:
                await lk.room.delete_room(api.DeleteRoomRequest(room="vanish"))

            await receiver.wait_for(lambda r: "session_ended" in events_of(receiver, "vanish"))

            ended = next(e for e in receiver.events() if e["event"] == "session_ended")
            assert ended["reason"] == "reconciled" and "reconciliation" in ended["reason_text"]
            assert await state_of(redis, "vanish") == "ended"


@pytest.mark.slow
async def test_only_one_worker_reconciles_at_a_time(
    redis_server: RedisServer, redis: Redis
) -> None:
    async with Emulator(LK_KEY, LK_SECRET, tick_interval=3600) as emu:
        settings = make_settings(redis_server.url, emu.url, reconcile_interval=0.5)
        async with run_stack(settings, emu) as stack, run_worker(settings), run_worker(settings):
            await stack.api.create(minimal_request("watched"))  # reconciliation needs a room
            started = time.time()
            await eventually(
                lambda: _list_calls_at_least(stack, 4), timeout=10, what="4 reconciliations"
            )
            elapsed = time.time() - started
            calls = (await stack.lk("calls?method=ListRooms"))["calls"]

        # Three workers, one lease: about one ListRooms per interval, not three.
        assert len(calls) <= elapsed / 0.5 + 2
        gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(calls)]
        assert min(gaps) >= 0.4, gaps


async def _list_calls_at_least(stack: Stack, n: int) -> bool:
    return len((await stack.lk("calls?method=ListRooms"))["calls"]) >= n


async def test_a_second_session_after_the_end_gets_a_new_sid(stack: Stack) -> None:
    first = await stack.api.create(minimal_request("again"))
    await stack.api.post("/auth/room/endRoom", {"room_id": "again"})

    second = await stack.api.create(minimal_request("again"))

    assert second["msg"] == "success"
    assert second["room_info"]["sid"] != first["room_info"]["sid"]
