"""Hand-written hostile input: each gets a clear plugNmeet-shaped refusal, never a 500 or a room."""

from __future__ import annotations

import json

import pytest

from tests.support.api import minimal_request
from tests.support.stack import Stack


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


HOSTILE = [
    ("deep nesting", ('{"room_id":"r","metadata":' + nested(5000) + "}").encode(),
     "invalid JSON body: nesting deeper than"),
    ("deep nesting inside metadata", json.dumps(
        minimal_request("r", extra=json.loads(nested(20)))).encode(),
     "metadata.extra"),
    ("a huge string", json.dumps(minimal_request("r", welcome_message="x" * 200_000)).encode(),
     "metadata.welcome_message: must be at most 4096 characters"),
    ("invalid UTF-8", b'{"room_id":"r\xff\xfe","metadata":{}}',
     "invalid JSON body: body is not valid UTF-8"),
    ("a number with 5000 digits", ('{"room_id":"r","max_participants":' + "9" * 5000 + "}").encode(),
     "invalid JSON body: malformed JSON"),
    ("a number out of range", json.dumps({**minimal_request("r"), "max_participants": 2**63}).encode(),
     "max_participants: must be at most"),
    ("negative zero timeout as float", b'{"room_id":"r","empty_timeout":-0.0,"metadata":{}}',
     "empty_timeout: must be an integer >= 0"),
    ("NaN", b'{"room_id":"r","max_participants":NaN,"metadata":{}}',
     "invalid JSON body: NaN is not valid JSON"),
    ("duplicate keys", b'{"room_id":"a","room_id":"b","metadata":{}}',
     "invalid JSON body: duplicate key 'room_id'"),
    ("an empty body", b"", "invalid JSON body: body is empty"),
    ("a JSON string", b'"room01"', "request body must be a JSON object"),
    ("null", b"null", "request body must be a JSON object"),
    ("a NUL in room_id", json.dumps(minimal_request("r\u0000x")).encode(),
     "room_id: must be 1-256 characters"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "msg"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
async def test_hostile_body_is_refused_clearly_and_creates_nothing(
    stack: Stack, body: bytes, msg: str
) -> None:
    status, answer = await stack.api.raw("/auth/room/create", body)

    assert status == 200, answer
    assert answer["status"] is False and answer["status_code"] == "INVALID_PARAMETERS"
    assert answer["msg"].startswith(msg), answer["msg"]
    assert (await stack.lk("calls?method=CreateRoom"))["calls"] == []


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_a_wrong_content_type_is_refused_with_415(stack: Stack, content_type: str) -> None:
    body = json.dumps(minimal_request("r")).encode()

    status, answer = await stack.api.raw("/auth/room/create", body, content_type=content_type)

    assert status == 415
    assert answer["status"] is False and "application/json" in answer["msg"]


@pytest.mark.parametrize(
    "route", ["isRoomActive", "getActiveRoomInfo", "endRoom", "getJoinToken", "fetchPastRooms"]
)
async def test_every_room_route_refuses_a_non_object_body(stack: Stack, route: str) -> None:
    status, answer = await stack.api.raw(f"/auth/room/{route}", b"[1,2,3]")

    assert status == 200
    assert answer == {
        "status": False,
        "msg": "request body must be a JSON object",
        "status_code": "INVALID_PARAMETERS",
    }


async def test_get_on_an_auth_route_is_refused_with_405(stack: Stack) -> None:
    async with stack.http.get(f"{stack.url}/auth/room/create") as resp:
        assert resp.status == 405
