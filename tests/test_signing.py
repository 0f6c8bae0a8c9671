"""Signatures as pure functions (README, The API and Webhooks), round-tripped through the receivers'
reference verifiers: `standardwebhooks.Webhook` and `livekit.api.WebhookReceiver`. One mutation
per test."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from livekit import api
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.support.api import API_KEY, API_SECRET, WEBHOOK_SECRET, WEBHOOK_SECRET_OLD
from worker.webhooks.signing import (
    WEBHOOK_TOKEN_TTL,
    body_hmac,
    standard_signature,
    verify_body_hmac,
    webhook_headers,
    webhook_jwt,
)

BODY = json.dumps({"event": "room_created", "id": "evt-1", "room": {"sid": "RM_1"}}).encode()
UNRELATED_SECRET = "whsec_" + base64.b64encode(b"not-one-of-ours-at-all-32-bytes!").decode()


def key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def headers_for(*secrets: str, now: int | None = None, body: bytes = BODY) -> dict[str, str]:
    return webhook_headers(
        body=body,
        msg_id="evt-1",
        now=int(time.time()) if now is None else now,
        api_key=API_KEY,
        api_secret=API_SECRET,
        keys=[key(s) for s in secrets],
        user_agent="roomkeeper/test",
    )


def livekit_receive(body: bytes, token: str) -> object:
    return api.WebhookReceiver(api.TokenVerifier(API_KEY, API_SECRET)).receive(body.decode(), token)


def test_plugnmeets_worked_vector_for_request_signatures() -> None:
    body = (
        b'{"room_id":"room01","metadata":{"room_title":"Test room",'
        b'"room_features":{"allow_webcams":true}}}'
    )
    expected = "dc4dc5897d6e803c2575eeb78ce8b585a8bc0f86836695f107e1ecb94165f79b"
    assert body_hmac(body, API_SECRET) == expected
    assert verify_body_hmac(body, expected.upper(), API_SECRET)
    assert not verify_body_hmac(body + b" ", expected, API_SECRET)


def test_standard_webhooks_verifies_our_signature() -> None:
    headers = headers_for(WEBHOOK_SECRET)
    assert Webhook(WEBHOOK_SECRET).verify(BODY, headers) == json.loads(BODY)
    assert headers["webhook-id"] == "evt-1"


def test_a_changed_body_fails_standard_webhooks() -> None:
    headers = headers_for(WEBHOOK_SECRET)
    with pytest.raises(WebhookVerificationError):
        Webhook(WEBHOOK_SECRET).verify(BODY.replace(b"RM_1", b"RM_2"), headers)


def test_another_secret_fails_standard_webhooks() -> None:
    with pytest.raises(WebhookVerificationError):
        Webhook(UNRELATED_SECRET).verify(BODY, headers_for(WEBHOOK_SECRET))


def test_during_rotation_both_signatures_are_sent_and_either_secret_verifies() -> None:
    headers = headers_for(WEBHOOK_SECRET, WEBHOOK_SECRET_OLD)
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    assert Webhook(WEBHOOK_SECRET).verify(BODY, headers)
    assert Webhook(WEBHOOK_SECRET_OLD).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(UNRELATED_SECRET).verify(BODY, headers)


def test_the_signed_content_is_id_dot_timestamp_dot_body() -> None:
    expected = base64.b64encode(
        hmac.new(key(WEBHOOK_SECRET), b"evt-1.1700000000." + BODY, "sha256").digest()
    ).decode()
    assert standard_signature("evt-1", 1700000000, BODY, [key(WEBHOOK_SECRET)]) == f"v1,{expected}"


def test_livekits_receiver_verifies_our_token_and_hash_token_is_the_same_jwt() -> None:
    headers = headers_for(WEBHOOK_SECRET)
    assert headers["Authorization"] == headers["Hash-Token"]
    assert not headers["Authorization"].startswith("Bearer")
    livekit_receive(BODY, headers["Authorization"])


def test_livekits_receiver_refuses_a_changed_body() -> None:
    token = headers_for(WEBHOOK_SECRET)["Authorization"]
    with pytest.raises(Exception, match="hash mismatch"):
        livekit_receive(BODY + b" ", token)


def test_livekits_receiver_refuses_a_token_signed_with_another_secret() -> None:
    token = webhook_jwt(BODY, API_KEY, "some-other-secret-long-enough-for-hs256", int(time.time()))
    with pytest.raises(jwt.InvalidSignatureError):
        livekit_receive(BODY, token)


def test_the_jwt_claims_are_plugnmeets() -> None:
    now = int(time.time())
    claims = jwt.decode(webhook_jwt(BODY, API_KEY, API_SECRET, now), API_SECRET, ["HS256"])
    assert claims == {
        "iss": API_KEY,
        "nbf": now,
        "iat": now,
        "exp": now + WEBHOOK_TOKEN_TTL,
        "sha256": base64.b64encode(hashlib.sha256(BODY).digest()).decode(),
    }
    assert WEBHOOK_TOKEN_TTL == 300


def test_each_attempt_gets_a_fresh_token_and_timestamp_for_the_same_body() -> None:
    first = headers_for(WEBHOOK_SECRET, now=1_700_000_000)
    second = headers_for(WEBHOOK_SECRET, now=1_700_000_005)
    assert first["webhook-id"] == second["webhook-id"]
    assert first["webhook-timestamp"] != second["webhook-timestamp"]
    assert first["Authorization"] != second["Authorization"]
    assert first["webhook-signature"] != second["webhook-signature"]
    sha = [jwt.decode(h["Authorization"], options={"verify_signature": False})["sha256"]
           for h in (first, second)]  # fmt: skip
    assert sha[0] == sha[1]


def test_every_attempt_carries_both_signatures_headers() -> None:
    headers = headers_for(WEBHOOK_SECRET)
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "roomkeeper/test"
    assert set(headers) == {
        "Content-Type",
        "User-Agent",
        "Authorization",
        "Hash-Token",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
