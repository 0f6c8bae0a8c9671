"""Recordings: LiveKit egress becomes plugNmeet's recording events; auto cloud recording."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from livekit import api
from redis.asyncio import Redis

from emulator.server import Emulator
from tests.support.api import LK_KEY, LK_SECRET, eventually, minimal_request
from tests.support.servers import Receiver, RedisServer
from tests.support.stack import Stack, make_settings, run_stack
from worker import keys

RECORDING = {"start_recording", "end_recording", "recording_proceeded", "start_rtmp", "end_rtmp"}


@pytest.fixture
async def lk(emulator: Emulator) -> AsyncIterator[api.LiveKitAPI]:
    client = api.LiveKitAPI(emulator.url, LK_KEY, LK_SECRET)
    yield client
    await client.aclose()


def names(receiver: Receiver) -> list[str]:
    return [e["event"] for e in receiver.events("/hook")]


def recording_events(receiver: Receiver) -> list[dict[str, Any]]:
    return [e for e in receiver.events("/hook") if e["event"] in RECORDING]


async def has(receiver: Receiver, event: str, count: int = 1) -> bool:
    return names(receiver).count(event) >= count


async def created_room(stack: Stack, receiver: Receiver, room_id: str, **extra: Any) -> None:
    body = {**minimal_request(room_id, webhook_url=receiver.at("/hook")), **extra}
    await stack.api.create(body)
    await eventually(lambda: has(receiver, "room_started"), what="room_started")


def file_request(room: str) -> api.RoomCompositeEgressRequest:
    return api.RoomCompositeEgressRequest(
        room_name=room, file_outputs=[api.EncodedFileOutput(filepath="{room_name}/{time}.mp4")]
    )


async def test_an_egress_started_and_stopped_gives_start_end_and_proceeded_with_its_file(
    stack: Stack, receiver: Receiver, lk: api.LiveKitAPI
) -> None:
    await created_room(stack, receiver, "lecture")

    egress = await lk.egress.start_room_composite_egress(file_request("lecture"))
    await eventually(lambda: has(receiver, "start_recording"), what="start_recording")
    await lk.egress.stop_egress(api.StopEgressRequest(egress_id=egress.egress_id))
    await eventually(lambda: has(receiver, "recording_proceeded"), what="recording_proceeded")

    events = recording_events(receiver)
    assert [e["event"] for e in events] == [
        "start_recording",
        "end_recording",
        "recording_proceeded",
    ]
    assert {e["recording_info"]["record_id"] for e in events} == {egress.egress_id}
    final = (await lk.egress.list_egress(api.ListEgressRequest(egress_id=egress.egress_id))).items[
        0
    ]
    file = final.file_results[0]
    ready = events[-1]["recording_info"]
    assert ready["file_path"] == file.location and file.location.startswith("lecture/")
    assert ready["file_size"] == round(file.size / 1_000_000, 2) and file.size > 0
    assert events[1]["recording_info"]["recorder_msg"] == "recording completed"
    assert all(e["room"]["room_id"] == "lecture" and e["room"]["sid"] for e in events)
    # In the room's order: each recording event after the LiveKit events that preceded it.
    order = names(receiver)
    assert order.index("room_started") < order.index("start_recording")


async def test_a_failed_egress_ends_the_recording_with_the_reason_and_no_file(
    stack: Stack, receiver: Receiver, lk: api.LiveKitAPI
) -> None:
    await created_room(stack, receiver, "broken")
    await stack.lk("egress/fail-next", "POST", {"error": "no encoder available"})

    egress = await lk.egress.start_room_composite_egress(file_request("broken"))
    await eventually(lambda: has(receiver, "end_recording"), what="end_recording")

    events = recording_events(receiver)
    assert [e["event"] for e in events] == ["start_recording", "end_recording"]
    info = events[1]["recording_info"]
    assert info["record_id"] == egress.egress_id
    assert info["recorder_msg"] == "recording failed: no encoder available"
    assert "file_path" not in info


async def test_a_stream_egress_gives_start_and_end_rtmp(
    stack: Stack, receiver: Receiver, lk: api.LiveKitAPI
) -> None:
    await created_room(stack, receiver, "broadcast")
    req = api.RoomCompositeEgressRequest(
        room_name="broadcast", stream_outputs=[api.StreamOutput(urls=["rtmp://127.0.0.1/x/k"])]
    )
    egress = await lk.egress.start_room_composite_egress(req)
    await eventually(lambda: has(receiver, "start_rtmp"), what="start_rtmp")
    await stack.lk(f"egress/{egress.egress_id}/end", "POST", {"status": "EGRESS_ABORTED"})
    await eventually(lambda: has(receiver, "end_rtmp"), what="end_rtmp")

    events = recording_events(receiver)
    assert [e["event"] for e in events] == ["start_rtmp", "end_rtmp"]
    assert events[1]["recording_info"]["recorder_msg"] == "streaming aborted: no reason given"


async def test_egress_events_of_rooms_that_are_not_ours_are_dropped(
    stack: Stack, receiver: Receiver, lk: api.LiveKitAPI, redis: Redis
) -> None:
    await lk.room.create_room(api.CreateRoomRequest(name="foreign"))
    egress = await lk.egress.start_room_composite_egress(file_request("foreign"))
    started = await eventually(lambda: sent(stack, "foreign", "egress_started"), what="sent")
    event_id = started[0]["id"]
    await eventually(lambda: redis.exists(keys.lk_event_done(event_id)), what="event applied")
    assert await redis.exists(keys.egress(egress.egress_id)) == 0
    assert recording_events(receiver) == []


async def sent(stack: Stack, room: str, event: str) -> list[dict[str, Any]]:
    """The webhooks the emulator sent (and got a 2xx for) of one event of one room."""
    records = (await stack.lk(f"webhooks?room={room}&event={event}"))["webhooks"]
    return [r for r in records if r["delivered"]]


# ------------------------------------------------------------------ auto recording


def auto_request(room_id: str, receiver: Receiver) -> dict[str, Any]:
    body = minimal_request(room_id, webhook_url=receiver.at("/hook"))
    body["metadata"]["room_features"] = {
        "recording_features": {
            "is_allow": True,
            "is_allow_cloud": True,
            "enable_auto_cloud_recording": True,
        }
    }
    return body


async def join_with_token(stack: Stack, room_id: str, user_id: str, *, admin: bool) -> None:
    """Join the way a browser does: with a getJoinToken token, LiveKit taking its metadata."""
    user = {"name": user_id, "user_id": user_id, "is_admin": admin}
    status, body = await stack.api.post(
        "/auth/room/getJoinToken", {"room_id": room_id, "user_info": user}
    )
    assert status == 200 and body["status"], body
    claims = jwt.decode(body["token"], LK_SECRET, algorithms=["HS256"], issuer=LK_KEY)
    await stack.lk(
        f"rooms/{room_id}/participants",
        "POST",
        {"identity": claims["sub"], "metadata": claims["metadata"]},
    )


async def joined(receiver: Receiver, identity: str, count: int = 1) -> bool:
    seen = [
        e
        for e in receiver.events("/hook")
        if e["event"] == "participant_joined" and e["participant"]["identity"] == identity
    ]
    return len(seen) >= count


async def egresses(stack: Stack, room_id: str) -> list[dict[str, Any]]:
    return list((await stack.lk(f"egress?room={room_id}"))["egress"])


async def test_the_first_admin_starts_one_recording_and_ending_the_session_completes_it(
    stack: Stack, receiver: Receiver, redis: Redis
) -> None:
    await stack.api.create(auto_request("class", receiver))
    await eventually(lambda: has(receiver, "room_started"))

    await join_with_token(stack, "class", "student", admin=False)
    await eventually(lambda: joined(receiver, "student"), what="student's join forwarded")
    assert await egresses(stack, "class") == []
    assert await redis.hget(keys.room("class"), "rec_claim") is None

    await join_with_token(stack, "class", "teacher", admin=True)
    await eventually(lambda: has(receiver, "start_recording"), what="start_recording")
    started = await egresses(stack, "class")
    assert len(started) == 1
    egress_id = started[0]["egress_id"]

    await join_with_token(stack, "class", "assistant", admin=True)
    await stack.lk("rooms/class/participants/teacher", "DELETE")
    await join_with_token(stack, "class", "teacher", admin=True)  # a rejoin
    await eventually(lambda: joined(receiver, "teacher", 2), what="teacher's rejoin forwarded")
    assert await eventually(lambda: joined(receiver, "assistant"))
    assert [e["egress_id"] for e in await egresses(stack, "class")] == [egress_id]
    assert (
        await redis.zcard(keys.schedule_due(keys.TIMERS)) >= 1
    )  # the empty timer; no record timer is left
    assert not [
        m
        for m in await redis.zrange(keys.schedule_due(keys.TIMERS), 0, -1)
        if m.startswith("record")
    ]

    _, body = await stack.api.post("/auth/room/endRoom", {"room_id": "class"})
    assert body["status"], body
    await eventually(lambda: has(receiver, "recording_proceeded"), what="recording_proceeded")
    ready = [e for e in recording_events(receiver) if e["event"] == "recording_proceeded"]
    assert ready[0]["recording_info"]["record_id"] == egress_id
    assert ready[0]["recording_info"]["file_path"].startswith("class-")
    assert names(receiver).count("start_recording") == 1
    stop = (await stack.lk("calls?method=StopEgress"))["calls"]
    assert [c["status"] for c in stop] == [200]  # ending the session stopped it


@pytest.fixture
async def quick_retry_stack(
    redis_server: RedisServer, emulator: Emulator, redis: Redis
) -> AsyncIterator[Stack]:
    settings = make_settings(redis_server.url, emulator.url, recording_retry_schedule="0.05,0.05")
    async with run_stack(settings, emulator) as s:
        yield s


async def test_a_recording_that_fails_to_start_is_retried_then_started(
    quick_retry_stack: Stack, receiver: Receiver
) -> None:
    stack = quick_retry_stack
    fault = {"method": "StartRoomCompositeEgress", "code": "unavailable", "count": 2}
    await stack.lk("faults", "POST", fault)
    await stack.api.create(auto_request("retried", receiver))
    await eventually(lambda: has(receiver, "room_started"))

    await join_with_token(stack, "retried", "teacher", admin=True)
    await eventually(lambda: has(receiver, "start_recording"), what="started")

    calls = (await stack.lk("calls?method=StartRoomCompositeEgress"))["calls"]
    assert [c["status"] for c in calls] == [503, 503, 200]
    assert len(await egresses(stack, "retried")) == 1


async def test_a_recording_that_never_starts_is_reported_with_the_reason(
    quick_retry_stack: Stack, receiver: Receiver
) -> None:
    stack = quick_retry_stack
    await stack.lk("faults", "POST", {"method": "StartRoomCompositeEgress", "count": -1})
    await stack.api.create(auto_request("doomed", receiver))
    await eventually(lambda: has(receiver, "room_started"))

    await join_with_token(stack, "doomed", "teacher", admin=True)
    await eventually(lambda: has(receiver, "end_recording"), what="end_recording")

    info = recording_events(receiver)[0]["recording_info"]
    assert info["record_id"] == ""
    assert info["recorder_msg"].startswith("could not start the recording after 3 attempts:")
    assert "unavailable" in info["recorder_msg"]
    calls = (await stack.lk("calls?method=StartRoomCompositeEgress"))["calls"]
    assert len(calls) == 3


# ------------------------------------------------------------------ /auth/recording/*


async def test_recordings_seen_are_listed_and_described_in_plugnmeet_shapes(
    stack: Stack, receiver: Receiver, lk: api.LiveKitAPI
) -> None:
    await created_room(stack, receiver, "archive")
    egress = await lk.egress.start_room_composite_egress(file_request("archive"))
    await eventually(lambda: has(receiver, "start_recording"), what="start_recording")
    _, active = await stack.api.post("/auth/room/getActiveRoomInfo", {"room_id": "archive"})
    assert active["room"]["room_info"]["is_recording"] is True
    _, listed = await stack.api.post("/auth/recording/fetch", {"room_ids": ["archive"]})
    assert listed["result"]["total_recordings"] == 0  # no file yet

    await lk.egress.stop_egress(api.StopEgressRequest(egress_id=egress.egress_id))
    await eventually(lambda: has(receiver, "recording_proceeded"), what="recording_proceeded")
    _, active = await stack.api.post("/auth/room/getActiveRoomInfo", {"room_id": "archive"})
    assert active["room"]["room_info"]["is_recording"] is False

    ready = recording_events(receiver)[-1]["recording_info"]
    _, listed = await stack.api.post("/auth/recording/fetch", {"room_ids": ["archive"]})
    assert listed["status"] is True
    result = listed["result"]
    assert (result["total_recordings"], result["from"], result["order_by"]) == (1, 0, "DESC")
    row = result["recordings_list"][0]
    assert row["record_id"] == egress.egress_id and row["room_id"] == "archive"
    assert (row["file_path"], row["file_size"]) == (ready["file_path"], ready["file_size"])
    assert row["room_sid"] == recording_events(receiver)[0]["room"]["sid"]
    _, others = await stack.api.post("/auth/recording/fetch", {"room_ids": ["elsewhere"]})
    assert others["result"]["recordings_list"] == [] and others["msg"] == "no recordings found"

    _, info = await stack.api.post("/auth/recording/info", {"record_id": egress.egress_id})
    assert info["status"] is True and info["recording_info"] == row
    assert info["room_info"]["room_id"] == "archive" and info["room_info"]["ended"] == 0
    _, missing = await stack.api.post("/auth/recording/info", {"record_id": "EG_nothing"})
    assert (missing["status"], missing["status_code"]) == (False, "NOT_FOUND")

    for route in ("delete", "getDownloadToken"):
        status, answer = await stack.api.post(
            f"/auth/recording/{route}", {"record_id": egress.egress_id}
        )
        assert status == 200 and answer["status"] is False
        assert answer["msg"].startswith("not supported here: recordings are files in your egress")


@pytest.fixture
async def s3_stack(
    redis_server: RedisServer, emulator: Emulator, redis: Redis
) -> AsyncIterator[Stack]:
    settings = make_settings(
        redis_server.url,
        emulator.url,
        recording_output="s3://lessons/{room_name}/{time}.mp4?endpoint=http://127.0.0.1:9&region=x1",
        recording_s3_access_key="AKIDEXAMPLE",
        recording_s3_secret="s3-secret-for-the-egress",
    )
    async with run_stack(settings, emulator) as s:
        yield s


async def test_an_s3_output_sends_bucket_endpoint_and_credentials_to_the_egress(
    s3_stack: Stack, receiver: Receiver
) -> None:
    stack = s3_stack
    await stack.api.create(auto_request("uploaded", receiver))
    await eventually(lambda: has(receiver, "room_started"))
    await join_with_token(stack, "uploaded", "teacher", admin=True)
    await eventually(lambda: has(receiver, "start_recording"), what="start_recording")

    (egress,) = await egresses(stack, "uploaded")
    s3 = egress["room_composite"]["file_outputs"][0]["s3"]
    assert (s3["bucket"], s3["endpoint"], s3["region"]) == ("lessons", "http://127.0.0.1:9", "x1")
    assert (s3["access_key"], s3["secret"]) == ("AKIDEXAMPLE", "s3-secret-for-the-egress")
    await stack.api.post("/auth/room/endRoom", {"room_id": "uploaded"})
    await eventually(lambda: has(receiver, "recording_proceeded"), what="recording_proceeded")
    ready = recording_events(receiver)[-1]["recording_info"]
    assert ready["file_path"].startswith("http://127.0.0.1:9/lessons/uploaded/")
