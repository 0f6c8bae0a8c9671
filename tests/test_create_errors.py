"""Bad input to `/auth/room/create`: a plugNmeet-shaped error each, never a 500, nothing created."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.api import API_KEY, minimal_request, seed_request
from tests.support.stack import Stack
from worker.webhooks.signing import body_hmac


def features(**room_features: Any) -> dict[str, Any]:
    return {"room_id": "r1", "metadata": {"room_title": "t", "room_features": room_features}}


INVALID_BODIES = [
    ("missing room_id", {"metadata": {"room_title": "t", "room_features": {}}}, "room_id: is required"),
    ("empty room_id", minimal_request(""), "room_id: must be 1-256 characters"),
    ("room_id with a slash", minimal_request("a/b"), "room_id: must be 1-256 characters"),
    ("room_id too long", minimal_request("r" * 257), "room_id: must be 1-256 characters"),
    ("room_id a number", {**minimal_request("x"), "room_id": 5}, "room_id: must be a string"),
    ("missing metadata", {"room_id": "r1"}, "metadata: is required"),
    ("metadata a string", {"room_id": "r1", "metadata": "{}"}, "metadata: must be an object"),
    ("empty room_title", {"room_id": "r1", "metadata": {"room_title": "  ", "room_features": {}}},
     "metadata.room_title: must not be empty"),
    ("missing room_features", {"room_id": "r1", "metadata": {"room_title": "t"}},
     "metadata.room_features: is required"),
    ("negative max_participants", {**minimal_request("r1"), "max_participants": -1},
     "max_participants: must be an integer >= 0"),
    ("fractional empty_timeout", {**minimal_request("r1"), "empty_timeout": 1.5},
     "empty_timeout: must be an integer >= 0"),
    ("string max_participants", {**minimal_request("r1"), "max_participants": "five"},
     "max_participants: must be an integer >= 0"),
    ("negative room_duration", features(room_duration=-5),
     "metadata.room_features.room_duration: must be an integer >= 0"),
    ("webhook_url not a URL", minimal_request("r1", webhook_url="not a url"),
     "metadata.webhook_url: must be an absolute http(s) URL"),
    ("webhook_url ftp", minimal_request("r1", webhook_url="ftp://example.com/x"),
     "metadata.webhook_url: must be an absolute http(s) URL"),
    ("webhook_url at a blocked literal IP", minimal_request("r1", webhook_url="http://10.0.0.1/x"),
     "metadata.webhook_url: refused: private address 10.0.0.1"),
    ("webhook_url at the metadata service", minimal_request("r1", webhook_url="http://169.254.169.254/"),
     "metadata.webhook_url: refused: link-local address 169.254.169.254"),
    ("too many breakout rooms",
     features(breakout_room_features={"is_allow": True, "allowed_number_rooms": 17}),
     "metadata.room_features.breakout_room_features.allowed_number_rooms: must be between 1 and 16"),
    ("a JSON array", [seed_request()], "request body must be a JSON object"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "msg"), [c[1:] for c in INVALID_BODIES], ids=[c[0] for c in INVALID_BODIES]
)
async def test_invalid_request_is_refused_with_its_reason_and_creates_nothing(
    stack: Stack, payload: Any, msg: str
) -> None:
    status, body = await stack.api.post("/auth/room/create", payload)

    assert status == 200
    assert body["status"] is False
    assert body["status_code"] == "INVALID_PARAMETERS"
    assert body["msg"].startswith(msg), body["msg"]
    assert (await stack.lk("calls?method=CreateRoom"))["calls"] == []


async def test_malformed_json_is_refused_with_the_same_shape(stack: Stack) -> None:
    status, body = await stack.api.raw("/auth/room/create", b'{"room_id": "r1",')

    assert status == 200
    assert body["status"] is False and body["status_code"] == "INVALID_PARAMETERS"
    assert body["msg"].startswith("invalid JSON body: malformed JSON")


async def test_body_over_one_mebibyte_is_refused_with_413(stack: Stack) -> None:
    payload = minimal_request("big", welcome_message="x" * (1024 * 1024))

    status, body = await stack.api.post("/auth/room/create", payload)

    assert status == 413
    assert body == {
        "status": False,
        "msg": "request body is larger than 1048576 bytes",
        "status_code": "INVALID_PARAMETERS",
    }
    assert (await stack.lk("calls?method=CreateRoom"))["calls"] == []


async def test_non_json_content_type_is_refused_with_415(stack: Stack) -> None:
    raw = json.dumps(seed_request()).encode()

    status, body = await stack.api.raw("/auth/room/create", raw, content_type="text/plain")

    assert status == 415
    assert body["status"] is False and "application/json" in body["msg"]


AUTH_CASES = [
    ("no API-KEY", {"HASH-SIGNATURE": "00"}, "Missing API-KEY header.", "MISSING_REQUIRED_PARAMETER"),
    ("unknown key", {"API-KEY": "nope", "HASH-SIGNATURE": "00"}, "Invalid API key provided.",
     "INVALID_API_KEY"),
    ("no HASH-SIGNATURE", {"API-KEY": API_KEY}, "Missing HASH-SIGNATURE header.",
     "MISSING_REQUIRED_PARAMETER"),
    ("bad signature", {"API-KEY": API_KEY, "HASH-SIGNATURE": "ab" * 32},
     "Failed to verify provided authentication details.", "INVALID_TOKEN_OR_SIGNATURE"),
    ("signature by another secret", {"API-KEY": API_KEY,
     "HASH-SIGNATURE": body_hmac(json.dumps(seed_request()).encode(), "other-secret")},
     "Failed to verify provided authentication details.", "INVALID_TOKEN_OR_SIGNATURE"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "msg", "code"), [c[1:] for c in AUTH_CASES], ids=[c[0] for c in AUTH_CASES]
)
async def test_authentication_failures_answer_401_and_create_nothing(
    stack: Stack, headers: dict[str, str], msg: str, code: str
) -> None:
    raw = json.dumps(seed_request()).encode()

    status, body = await stack.api.raw("/auth/room/create", raw, headers, sign=False)

    assert status == 401
    assert body == {"status": False, "msg": msg, "status_code": code}
    assert (await stack.lk("calls?method=CreateRoom"))["calls"] == []


async def test_a_body_altered_after_signing_fails_verification(stack: Stack) -> None:
    raw = json.dumps(seed_request()).encode()
    headers = {"API-KEY": API_KEY, "HASH-SIGNATURE": body_hmac(raw, stack.api.secret)}

    status, body = await stack.api.raw(
        "/auth/room/create", raw.replace(b"room01", b"room02"), headers, sign=False
    )

    assert status == 401 and body["status_code"] == "INVALID_TOKEN_OR_SIGNATURE"
