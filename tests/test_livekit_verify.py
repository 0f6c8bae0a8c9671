"""LiveKit's webhook tokens get the same verdict from `handlers.livekit_verify` as from
livekit-api's `WebhookReceiver`: every rule of the SDK's check, each broken in turn."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from livekit import api

from handlers.livekit_verify import Refused, WebhookVerifier
from tests.support.api import LK_KEY, LK_SECRET

BODY = b'{"event":"participant_joined","id":"EV_1","room":{"name":"r","sid":"RM_1"}}'
DIGEST = base64.b64encode(hashlib.sha256(BODY).digest()).decode()


def now() -> int:
    """The time a token is made at: read when it is made, not when this module was imported
    (the suite may reach these tests minutes later, past the leeway)."""
    return int(time.time())


def claims(**changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "iss": LK_KEY,
        "exp": now() + 600,
        "nbf": now(),
        "sub": "",
        "sha256": DIGEST,
    }
    out.update(changes)
    return {k: v for k, v in out.items() if v is not None}


def signed(payload: dict[str, Any], *, secret: str = LK_SECRET, **header: Any) -> str:
    return jwt.encode(payload, secret, algorithm=header.pop("alg", "HS256"), headers=header or None)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hand_made(header: Any, payload: Any, *, sign: bool = True, digest: Any = hashlib.sha256) -> str:
    """A token whose segments are exactly these (for what PyJWT would not encode)."""
    head = b64url(json.dumps(header).encode())
    body = b64url(json.dumps(payload).encode())
    mac = hmac.new(LK_SECRET.encode(), f"{head}.{body}".encode(), digest).digest()
    return f"{head}.{body}.{b64url(mac) if sign else ''}"


def swap_payload(token: str, payload: dict[str, Any]) -> str:
    head, _, sig = token.split(".")
    return f"{head}.{b64url(json.dumps(payload).encode())}.{sig}"


TOKENS: dict[str, Callable[[], str]] = {
    "valid": lambda: api.AccessToken(LK_KEY, LK_SECRET).with_sha256(DIGEST).to_jwt(),
    "valid, hand made": lambda: hand_made({"alg": "HS256", "typ": "JWT"}, claims()),
    "expired": lambda: signed(claims(exp=now() - 600)),
    "expired within the leeway": lambda: signed(claims(exp=now() - 30)),
    "no exp": lambda: signed(claims(exp=None)),
    "exp not a number": lambda: hand_made({"alg": "HS256"}, claims(exp="soon")),
    "exp as a numeric string": lambda: hand_made({"alg": "HS256"}, claims(exp=str(now() + 600))),
    "nbf ahead": lambda: signed(claims(nbf=now() + 600)),
    "nbf ahead within the leeway": lambda: signed(claims(nbf=now() + 30)),
    "exp beyond 64 bits": lambda: hand_made({"alg": "HS256"}, claims(exp=10**30)),
    "exp infinite": lambda: hand_made({"alg": "HS256"}, claims(exp=float("inf"))),
    "exp not a number (NaN)": lambda: hand_made({"alg": "HS256"}, claims(exp=float("nan"))),
    "nbf far behind, beyond 64 bits": lambda: hand_made({"alg": "HS256"}, claims(nbf=-(10**30))),
    "iat ahead": lambda: signed(claims(iat=now() + 600)),
    "iat not a number": lambda: hand_made({"alg": "HS256"}, claims(iat="x")),
    "another issuer": lambda: signed(claims(iss="someone-else")),
    "no issuer": lambda: signed(claims(iss=None)),
    "issuer not a string": lambda: hand_made({"alg": "HS256"}, claims(iss=5)),
    "an audience": lambda: signed(claims(aud="roomkeeper")),
    "an empty audience": lambda: hand_made({"alg": "HS256"}, claims(aud="")),
    "sub not a string": lambda: hand_made({"alg": "HS256"}, claims(sub=5)),
    "jti not a string": lambda: hand_made({"alg": "HS256"}, claims(jti=5)),
    "no sha256": lambda: signed(claims(sha256=None)),
    "sha256 of another body": lambda: signed(
        claims(sha256=base64.b64encode(hashlib.sha256(b"{}").digest()).decode())
    ),
    "sha256 not base64": lambda: signed(claims(sha256="not base64!")),
    "another secret": lambda: signed(claims(), secret="another-secret-" + "x" * 32),
    "HS512 with the secret": lambda: hand_made({"alg": "HS512"}, claims(), digest=hashlib.sha512),
    "alg none": lambda: jwt.encode(claims(), None, algorithm="none"),
    "no signature": lambda: hand_made({"alg": "HS256"}, claims(), sign=False),
    "kid not a string": lambda: hand_made({"alg": "HS256", "kid": 5}, claims()),
    "a kid": lambda: signed(claims(), kid="key-1"),
    "crit header": lambda: hand_made({"alg": "HS256", "crit": ["exp"]}, claims()),
    "header not an object": lambda: hand_made(["HS256"], claims()),
    "payload not an object": lambda: hand_made({"alg": "HS256"}, [1, 2]),
    "tampered payload": lambda: swap_payload(signed(claims()), claims(exp=now() + 9999)),
    "two segments": lambda: ".".join(signed(claims()).split(".")[:2]),
    "four segments": lambda: signed(claims()) + ".x",
    "not base64": lambda: "%%%.%%%.%%%",
    "empty": lambda: "",
    "not ascii": lambda: signed(claims()) + "é",
}


def sdk_accepts(token: str) -> bool:
    receiver = api.WebhookReceiver(api.TokenVerifier(LK_KEY, LK_SECRET))
    try:
        receiver.receive(BODY.decode(), token)
    except Exception:
        return False
    return True


def ours_accepts(token: str) -> bool:
    try:
        WebhookVerifier(LK_KEY, LK_SECRET).verify(BODY, token)
    except Refused:
        return False
    return True


@pytest.mark.parametrize("case", list(TOKENS))
def test_a_token_gets_the_sdks_verdict(case: str) -> None:
    token = TOKENS[case]()
    assert ours_accepts(token) == sdk_accepts(token)


def test_the_cases_include_tokens_the_sdk_accepts_and_many_it_refuses() -> None:
    verdicts = {case: sdk_accepts(make()) for case, make in TOKENS.items()}
    accepted = {case for case, ok in verdicts.items() if ok}
    assert {"valid", "valid, hand made", "expired within the leeway"} <= accepted
    assert len(verdicts) - len(accepted) >= 25


def test_one_verifier_gives_every_token_in_turn_the_sdks_verdict() -> None:
    """The verifier keeps its verdict on the last header it saw: tokens with other headers,
    good and bad, one after another, still get the SDK's verdict each."""
    verifier = WebhookVerifier(LK_KEY, LK_SECRET)
    tokens = [make() for make in TOKENS.values()]
    for token in tokens + tokens[::-1] + tokens:
        try:
            verifier.verify(BODY, token)
            ours = True
        except Refused:
            ours = False
        assert ours == sdk_accepts(token), token


def test_a_valid_token_does_not_verify_another_body() -> None:
    token = TOKENS["valid"]()
    with pytest.raises(Refused, match="hash mismatch"):
        WebhookVerifier(LK_KEY, LK_SECRET).verify(BODY + b" ", token)
