"""The rest of LiveKit's room lifecycle: departure timeout, dependent participants, zombie rooms."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from google.protobuf.json_format import MessageToJson
from livekit import api
from redis.asyncio import Redis

from emulator.server import Emulator
from tests.support.api import LK_KEY, LK_SECRET, eventually, livekit_calls, minimal_request
from tests.support.servers import Receiver, RedisServer
from tests.support.stack import Stack, make_settings, run_stack
from worker import keys


@pytest.fixture
async def lk(emulator: Emulator) -> AsyncIterator[api.LiveKitAPI]:
    client = api.LiveKitAPI(emulator.url, LK_KEY, LK_SECRET)
    yield client
    await client.aclose()


def events(receiver: Receiver, name: str) -> list[dict[str, Any]]:
    return [e for e in receiver.events("/hook") if e["event"] == name]


async def has(receiver: Receiver, name: str, count: int = 1) -> bool:
    return len(events(receiver, name)) >= count


# ------------------------------------------------------------------ departure_timeout


async def test_departure_timeout_and_its_default_reach_livekit_create_room(
    stack: Stack, emulator: Emulator
) -> None:
    await stack.api.create({**minimal_request("given"), "departure_timeout": 120})
    await stack.api.create({**minimal_request("camel"), "departureTimeout": 90})
    await stack.api.create(minimal_request("defaulted"))

    rooms = emulator.state.rooms
    assert rooms["given"].proto.departure_timeout == 120
    assert rooms["camel"].proto.departure_timeout == 90
    assert rooms["defaulted"].proto.departure_timeout == 60  # ours, not LiveKit's 20


async def test_a_bad_departure_timeout_is_refused_with_its_field(stack: Stack) -> None:
    _, body = await stack.api.post(
        "/auth/room/create", {**minimal_request("bad"), "departure_timeout": -1}
    )
    assert body["status"] is False
    assert body["msg"] == "departure_timeout: must be an integer >= 0"


# ------------------------------------------------------------------ dependent participants


async def test_a_room_joined_only_by_an_egress_still_ends_on_its_empty_timeout(
    stack: Stack, receiver: Receiver, lk: api.LiveKitAPI, redis: Redis
) -> None:
    # LiveKit's own idle check off: only roomkeeper's empty_timeout can end the room.
    await stack.lk("config", "POST", {"tick_interval": 3600})
    body = {**minimal_request("recorded", webhook_url=receiver.at("/hook")), "empty_timeout": 2}
    await stack.api.create(body)
    req = api.RoomCompositeEgressRequest(
        room_name="recorded", file_outputs=[api.EncodedFileOutput(filepath="r.mp4")]
    )
    egress = await lk.egress.start_room_composite_egress(req)
    await eventually(lambda: has(receiver, "participant_joined"), what="egress joined")
    assert events(receiver, "participant_joined")[0]["participant"]["identity"] == egress.egress_id

    ended = await eventually(lambda: _async(events(receiver, "session_ended")), timeout=10)
    assert ended[0]["reason"] == "empty_timeout"
    sid = ended[0]["room"]["sid"]
    assert await redis.hget(keys.past_room(sid), "joined_participants") == "0"


async def _async(value: Any) -> Any:
    return value


def signed(event: api.WebhookEvent) -> tuple[str, dict[str, str]]:
    body = MessageToJson(event)
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    token = api.AccessToken(LK_KEY, LK_SECRET).with_sha256(digest).to_jwt()
    return body, {"Authorization": token, "Content-Type": "application/webhook+json"}


async def post_event(stack: Stack, name: str, room: dict[str, Any], identity: str) -> None:
    event = api.WebhookEvent(
        event=name,
        id=f"EV_{name[:12]}{identity}{time.monotonic_ns()}",
        created_at=int(time.time()),
        room=api.Room(sid=room["sid"], name=room["name"]),
        participant=api.ParticipantInfo(sid=f"PA_{identity}", identity=identity),
    )
    body, headers = signed(event)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{stack.url}/webhook", data=body.encode(), headers=headers) as resp,
    ):
        assert resp.status == 200


async def test_dependents_do_not_count_and_aborted_or_unknown_leaves_never_go_negative(
    stack: Stack, receiver: Receiver, redis: Redis
) -> None:
    created = await stack.api.create(minimal_request("counted", webhook_url=receiver.at("/hook")))
    room = created["room_info"]
    await stack.lk("rooms/counted/participants", "POST", {"identity": "alice"})
    await stack.lk("rooms/counted/participants", "POST", {"identity": "bot", "kind": "AGENT"})
    await eventually(lambda: has(receiver, "participant_joined", 2), what="both joins forwarded")
    assert await redis.hget(keys.room("counted"), "participants") == "1"
    assert await redis.hget(keys.room("counted"), "joined") == "1"

    await post_event(stack, "participant_connection_aborted", room, "bob")
    await post_event(stack, "participant_left", room, "carol")  # never joined
    await stack.lk("rooms/counted/participants/bot", "DELETE")
    await stack.lk("rooms/counted/participants/alice", "DELETE")
    await post_event(stack, "participant_left", room, "alice")  # a second left for alice
    await eventually(lambda: has(receiver, "participant_left", 4), what="lefts forwarded")

    assert await redis.hget(keys.room("counted"), "participants") == "0"
    lefts = events(receiver, "participant_left")
    # carol (never in), the agent (never counted), alice, alice again
    assert [e["room"]["num_participants"] for e in lefts] == [1, 1, 0, 0]


# ------------------------------------------------------------------ rooms re-created


async def test_a_room_re_created_after_its_end_is_deleted_without_a_second_room_created(
    stack: Stack, receiver: Receiver, lk: api.LiveKitAPI, redis: Redis
) -> None:
    await stack.api.create(minimal_request("zombie", webhook_url=receiver.at("/hook")))
    _, ended = await stack.api.post("/auth/room/endRoom", {"room_id": "zombie"})
    assert ended["status"], ended
    await eventually(lambda: has(receiver, "session_ended"), what="session_ended")

    # A client reconnecting with its old token: LiveKit auto-creates the room again.
    reborn = await lk.room.create_room(api.CreateRoomRequest(name="zombie"))
    created_at = time.time()

    deletes = await eventually(
        lambda: _deletes(stack, 2), what="the re-created room deleted", timeout=10
    )
    lateness = deletes[-1]["at"] - created_at
    print(f"fault: re-created room deleted {lateness * 1000:.0f} ms after LiveKit created it")
    assert lateness < 1.0
    assert "zombie" not in stack.emulator.state.rooms
    assert await redis.hget(keys.room("zombie"), "state") == "ended"
    assert await redis.hget(keys.room("zombie"), "sid") != reborn.sid
    assert len(events(receiver, "room_created")) == 1
    assert len(events(receiver, "session_ended")) == 1


async def _deletes(stack: Stack, count: int) -> list[dict[str, Any]]:
    calls = await livekit_calls(stack.emulator.url, "DeleteRoom")
    return calls if len(calls) >= count else []


async def _applied(stack: Stack, redis: Redis, room: str) -> bool:
    records = (await stack.lk(f"webhooks?room={room}&event=room_started"))["webhooks"]
    return bool(records) and bool(await redis.exists(keys.lk_event_done(records[0]["id"])))


async def test_rooms_roomkeeper_never_knew_stay_unless_told_to_delete_them(
    stack: Stack, lk: api.LiveKitAPI, redis: Redis
) -> None:
    await lk.room.create_room(api.CreateRoomRequest(name="stranger"))
    await eventually(lambda: _applied(stack, redis, "stranger"), what="room_started applied")
    assert "stranger" in stack.emulator.state.rooms
    assert await livekit_calls(stack.emulator.url, "DeleteRoom") == []


@pytest.fixture
async def deleting_stack(
    redis_server: RedisServer, emulator: Emulator, redis: Redis
) -> AsyncIterator[Stack]:
    settings = make_settings(redis_server.url, emulator.url, unknown_rooms="delete")
    async with run_stack(settings, emulator) as s:
        yield s


async def test_with_unknown_rooms_delete_a_room_never_ours_is_deleted(
    deleting_stack: Stack, lk: api.LiveKitAPI, redis: Redis
) -> None:
    await lk.room.create_room(api.CreateRoomRequest(name="intruder"))
    await eventually(lambda: _deletes(deleting_stack, 1), what="DeleteRoom")
    assert "intruder" not in deleting_stack.emulator.state.rooms
    assert await redis.exists(keys.room("intruder")) == 0
