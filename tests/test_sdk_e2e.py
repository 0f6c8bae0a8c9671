"""Through the official Python SDK, against `roomkeeper api` and `roomkeeper worker` processes."""

from __future__ import annotations

import asyncio
import json

import pytest
from livekit import api
from plugnmeet_sdk import PlugNMeet
from plugnmeet_sdk.schemas.data import (
    BreakoutRoomFeatures,
    ChatFeatures,
    DisplayExternalLinkFeatures,
    ExternalMediaPlayerFeatures,
    RecordingFeatures,
    RoomFeatures,
    RoomMetadata,
    SharedNotePadFeatures,
    WaitingRoomFeatures,
    WhiteboardFeatures,
)
from plugnmeet_sdk.schemas.requests import CreateRoomRequest
from standardwebhooks import Webhook

from emulator.server import Emulator
from tests.support.api import (
    API_KEY,
    API_SECRET,
    LK_KEY,
    LK_SECRET,
    WEBHOOK_SECRET,
    Api,
    livekit_calls,
    livekit_rooms,
    seed_request,
)
from tests.support.procs import api_process, roomkeeper_env, worker_process
from tests.support.servers import Receiver, RedisServer, free_port
from tests.support.stack import Stack

pytestmark = pytest.mark.slow  # real processes or injected faults


def sdk_request(room_id: str, webhook_url: str) -> CreateRoomRequest:
    features = RoomFeatures(
        allow_webcams=True,
        mute_on_start=False,
        allow_screen_share=True,
        allow_rtmp=False,
        admin_only_webcams=False,
        allow_view_other_webcams=True,
        allow_view_other_users_list=True,
        recording_features=RecordingFeatures(True, True, True, False),
        chat_features=ChatFeatures(True, True),
        shared_note_pad_features=SharedNotePadFeatures(True),
        whiteboard_features=WhiteboardFeatures(True),
        external_media_player_features=ExternalMediaPlayerFeatures(True),
        waiting_room_features=WaitingRoomFeatures(False),
        breakout_room_features=BreakoutRoomFeatures(True, 4),
        display_external_link_features=DisplayExternalLinkFeatures(True),
        room_duration=0,
    )
    metadata = RoomMetadata(room_title="SDK room", room_features=features, webhook_url=webhook_url)
    return CreateRoomRequest(room_id=room_id, metadata=metadata, max_participants=10)


async def test_python_sdk_creates_a_room_through_api_and_worker_processes(
    redis_server: RedisServer, redis, receiver: Receiver
) -> None:
    port = free_port()
    async with Emulator(
        LK_KEY, LK_SECRET, webhook_urls=[f"http://127.0.0.1:{port}/webhook"], tick_interval=0.2
    ) as emu:
        env = roomkeeper_env(redis_server.url, emu.url)
        async with api_process(env, port) as (url, _), worker_process(env):
            client = PlugNMeet(url, API_KEY, API_SECRET)
            status, body = await client.createRoom(sdk_request("sdk-room", receiver.at("/hook")))

            assert status == 200, body
            assert body["status"] is True and body["msg"] == "success", body
            info = body["room_info"]
            assert info["name"] == "sdk-room" and info["max_participants"] == 10
            assert json.loads(info["metadata"])["room_title"] == "SDK room"
            assert (await livekit_rooms(emu.url))["sdk-room"]["sid"] == info["sid"]

            await receiver.wait_for(
                lambda r: any(x.json["event"] == "room_created" for x in r), timeout=15
            )
            hit = next(r for r in receiver.received if r.json["event"] == "room_created")
            assert hit.json["room"]["sid"] == info["sid"]
            api.WebhookReceiver(api.TokenVerifier(API_KEY, API_SECRET)).receive(
                hit.body.decode(), hit.headers["Authorization"]
            )
            Webhook(WEBHOOK_SECRET).verify(hit.body, hit.headers)


async def test_python_sdk_breakouts_with_zero_rooms_get_plugnmeets_default(stack: Stack) -> None:
    request = sdk_request("sdk-zero", "")
    request.metadata.room_features.breakout_room_features = BreakoutRoomFeatures(True, 0)
    client = PlugNMeet(stack.url, API_KEY, API_SECRET)

    status, body = await client.createRoom(request)

    assert status == 200 and body["status"] is True, body
    metadata = json.loads(body["room_info"]["metadata"])
    assert metadata["room_features"]["breakout_room_features"] == {
        "is_allow": True,
        "allowed_number_rooms": 6,
    }
    room = (await livekit_rooms(stack.emulator.url))["sdk-zero"]
    assert json.loads(room["metadata"]) == metadata


async def test_two_apis_and_two_workers_share_one_redis_and_create_one_room(
    redis_server: RedisServer, redis, receiver: Receiver
) -> None:
    async with Emulator(LK_KEY, LK_SECRET, tick_interval=0.2) as emu:
        env = roomkeeper_env(redis_server.url, emu.url)
        async with (
            api_process(env) as (url_a, _),
            api_process(env) as (url_b, _),
            worker_process(env, "worker-a"),
            worker_process(env, "worker-b"),
        ):
            clients = [Api(url_a), Api(url_b)]
            request = seed_request("shared", webhook_url=receiver.at("/hook"))
            answers = await asyncio.gather(*(clients[i % 2].create(request) for i in range(20)))
            for c in clients:
                await c.close()

            rooms = await livekit_rooms(emu.url)
            assert {a["room_info"]["sid"] for a in answers} == {rooms["shared"]["sid"]}
            assert len(await livekit_calls(emu.url, "CreateRoom")) == 1
            await receiver.wait_for(lambda r: len(r) >= 1, timeout=15)
            assert [r.json["event"] for r in receiver.received].count("room_created") == 1


async def test_a_bad_setting_stops_startup_naming_the_variable(redis_server: RedisServer) -> None:
    env = roomkeeper_env(redis_server.url, "http://127.0.0.1:1", ROOMKEEPER_PORT="not-a-port")
    env["ROOMKEEPER_WEBHOOK_SECRET"] = "plain-secret"
    from tests.support.servers import Process, roomkeeper_cmd

    proc = Process(roomkeeper_cmd("api"), env, "api").start()
    code = proc.wait(20)
    out = proc.output()

    assert code == 2
    assert "ROOMKEEPER_PORT" in out and "ROOMKEEPER_WEBHOOK_SECRET" in out
    assert "plain-secret" not in out  # values, secrets above all, are never echoed
    assert "Traceback" not in out
