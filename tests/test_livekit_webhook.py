"""`POST /webhook`: only LiveKit's signed events get in, each applied once."""

from __future__ import annotations

import base64
import datetime
import hashlib
import time

import aiohttp
import pytest
from google.protobuf.json_format import MessageToJson
from livekit import api
from redis.asyncio import Redis

from tests.support.api import LK_KEY, LK_SECRET, eventually, minimal_request
from tests.support.servers import Receiver
from tests.support.stack import Stack
from worker import keys
from worker.rooms.inbox import DEFLATE_FROM, encode_event
from worker.rooms.livekit_events import parse_event


def joined_event(room: dict, identity: str, event_id: str = "EV_test00000001") -> str:
    event = api.WebhookEvent(
        event="participant_joined",
        id=event_id,
        created_at=int(time.time()),
        room=api.Room(sid=room["sid"], name=room["name"]),
        participant=api.ParticipantInfo(sid="PA_x", identity=identity, state=2),
    )
    return MessageToJson(event)


def token_for(body: str, *, secret: str = LK_SECRET, ttl: datetime.timedelta | None = None) -> str:
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    token = api.AccessToken(LK_KEY, secret).with_sha256(digest)
    if ttl is not None:
        token = token.with_ttl(ttl)
    return token.to_jwt()


async def post_webhook(url: str, body: str, headers: dict[str, str]) -> int:
    headers = {"Content-Type": "application/webhook+json", **headers}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/webhook", data=body.encode(), headers=headers) as resp,
    ):
        return resp.status


@pytest.fixture
async def room(stack: Stack, receiver: Receiver) -> dict:
    created = await stack.api.create(minimal_request("hooked", webhook_url=receiver.at("/hook")))
    await receiver.wait_for(lambda r: any(x.json["event"] == "room_started" for x in r))
    return dict(created["room_info"])


BAD_REQUESTS = {
    "unsigned": lambda body: {},
    "forged": lambda body: {"Authorization": token_for(body, secret="another-secret-" + "x" * 32)},
    "expired": lambda body: {
        "Authorization": token_for(body, ttl=datetime.timedelta(seconds=-600))
    },
    "body tampered": lambda body: {"Authorization": token_for(body.replace("alice", "mallory"))},
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
async def test_a_webhook_that_does_not_verify_gets_401_and_changes_nothing(
    stack: Stack, room: dict, redis: Redis, receiver: Receiver, case: str
) -> None:
    body = joined_event(room, "alice")

    status = await post_webhook(stack.url, body, BAD_REQUESTS[case](body))

    assert status == 401
    assert await redis.hget(keys.room("hooked"), "participants") == "0"
    assert await redis.llen(keys.schedule_list(keys.INBOUND, "hooked")) == 0
    assert "participant_joined" not in [e["event"] for e in receiver.events()]


async def test_the_same_event_delivered_twice_is_processed_once(
    stack: Stack, room: dict, redis: Redis, receiver: Receiver
) -> None:
    body = joined_event(room, "alice")

    first = await post_webhook(stack.url, body, {"Authorization": token_for(body)})
    second = await post_webhook(stack.url, body, {"Authorization": token_for(body)})

    assert (first, second) == (200, 200)
    await receiver.wait_for(lambda r: any(x.json["event"] == "participant_joined" for x in r))
    await eventually(lambda: _drained(redis), what="inbound and delivery queues drained")
    assert [e["event"] for e in receiver.events()].count("participant_joined") == 1
    assert await redis.hget(keys.room("hooked"), "participants") == "1"


async def _drained(redis: Redis) -> bool:
    return (
        await redis.zcard(keys.schedule_due(keys.INBOUND)) == 0
        and await redis.zcard(keys.schedule_due(keys.DELIVERY_QUEUES)) == 0
    )


async def test_events_for_rooms_we_did_not_create_are_dropped(
    stack: Stack, redis: Redis, receiver: Receiver
) -> None:
    stranger = {"sid": "RM_stranger0001", "name": "not-ours"}
    body = joined_event(stranger, "eve", "EV_stranger0001")

    status = await post_webhook(stack.url, body, {"Authorization": token_for(body)})

    assert status == 200
    await eventually(lambda: _drained(redis), what="inbound queue drained")
    assert await redis.exists(keys.room("not-ours")) == 0
    assert receiver.received == []


async def test_bearer_prefixed_tokens_are_accepted_too(
    stack: Stack, room: dict, receiver: Receiver
) -> None:
    body = joined_event(room, "frank", "EV_bearer000001")

    status = await post_webhook(stack.url, body, {"Authorization": f"Bearer {token_for(body)}"})

    assert status == 200
    await receiver.wait_for(lambda r: any(x.json["event"] == "participant_joined" for x in r))


async def test_an_event_of_an_earlier_session_goes_to_that_sessions_webhook(
    stack: Stack, room: dict, redis: Redis, receiver: Receiver
) -> None:
    await stack.api.post("/auth/room/endRoom", {"room_id": "hooked"})
    again = await stack.api.create(minimal_request("hooked", webhook_url=receiver.at("/next")))
    assert again["room_info"]["sid"] != room["sid"]
    body = joined_event(room, "late", "EV_earlier00001")  # the ended session's sid

    status = await post_webhook(stack.url, body, {"Authorization": token_for(body)})

    assert status == 200
    await receiver.wait_for(
        lambda r: any(x.path == "/hook" and x.json["event"] == "participant_joined" for x in r)
    )
    late = next(e for e in receiver.events("/hook") if e["event"] == "participant_joined")
    assert (late["room"]["sid"], late["participant"]["identity"]) == (room["sid"], "late")
    await eventually(lambda: _drained(redis), what="inbound and delivery queues drained")
    assert "participant_joined" not in [e["event"] for e in receiver.events("/next")]
    assert await redis.hget(keys.room("hooked"), "participants") == "0"  # not the new session's


def test_a_queued_event_is_kept_deflated_and_older_forms_still_read() -> None:
    metadata = '{"room_title":"Test room","room_features":{"allow_webcams":true}}' * 20
    room = api.Room(sid="RM_q1", name="queued", metadata=metadata, creation_time_ms=1_700_000_000)
    event = api.WebhookEvent(event="room_started", id="EV_q1", room=room, created_at=1_700_000_000)
    queued = encode_event(event)
    assert queued.startswith("z1:")
    assert len(queued) < len(event.SerializeToString()) / 2
    assert parse_event(queued) == event
    # As versions before kept it: protobuf in base64, or LiveKit's JSON body.
    assert parse_event(base64.b64encode(event.SerializeToString()).decode()) == event
    assert parse_event(MessageToJson(event)) == event
    with pytest.raises(ValueError, match="not a LiveKit webhook event"):
        parse_event("z1:bm90IGRlZmxhdGVk")


def test_a_small_queued_event_is_kept_as_base64_protobuf_and_read_back() -> None:
    room = api.Room(sid="RM_q2", name="queued")
    participant = api.ParticipantInfo(sid="PA_1", identity="alice", state=2)
    event = api.WebhookEvent(
        event="participant_joined", id="EV_q2", room=room, participant=participant
    )
    queued = encode_event(event)
    assert len(event.SerializeToString()) < DEFLATE_FROM
    assert base64.b64decode(queued, validate=True) == event.SerializeToString()
    assert parse_event(queued) == event
