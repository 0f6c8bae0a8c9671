"""Signatures in and out, as small pure functions.

- plugNmeet API requests: lowercase hex HMAC-SHA256 of the raw body (`HASH-SIGNATURE`).
- Outgoing webhooks, plugNmeet/LiveKit style: an HS256 JWT whose `sha256` claim is the base64
  SHA-256 of the exact body, sent as `Authorization` and `Hash-Token`.
- Outgoing webhooks, Standard Webhooks style: `v1,<base64 HMAC-SHA256("id.timestamp.body")>`,
  one per configured secret so receivers can rotate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

import jwt

WEBHOOK_TOKEN_TTL = 300


def body_hmac(body: bytes, secret: str) -> str:
    """plugNmeet's request signature: hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_body_hmac(body: bytes, signature: str, secret: str) -> bool:
    """Constant-time check of a plugNmeet request signature."""
    return hmac.compare_digest(body_hmac(body, secret), signature.strip().lower())


def body_sha256(body: bytes) -> str:
    """base64 SHA-256 of a body, the JWT `sha256` claim LiveKit and plugNmeet use."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def webhook_jwt(body: bytes, api_key: str, api_secret: str, now: int) -> str:
    """A fresh token for one attempt; `livekit.api.WebhookReceiver` verifies it."""
    claims = {
        "iss": api_key,
        "nbf": now,
        "iat": now,
        "exp": now + WEBHOOK_TOKEN_TTL,
        "sha256": body_sha256(body),
    }
    return jwt.encode(claims, api_secret, algorithm="HS256")


def standard_signature(msg_id: str, timestamp: int, body: bytes, keys: Sequence[bytes]) -> str:
    """The `webhook-signature` header value: one `v1,` signature per key, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        for key in keys
    )


def webhook_headers(
    *,
    body: bytes,
    msg_id: str,
    now: int,
    api_key: str,
    api_secret: str,
    keys: Sequence[bytes],
    user_agent: str,
) -> dict[str, str]:
    """Every header of one delivery attempt (fresh JWT and timestamp each time)."""
    token = webhook_jwt(body, api_key, api_secret, now)
    return {
        "Content-Type": "application/json",
        "User-Agent": user_agent,
        "Authorization": token,
        "Hash-Token": token,
        "webhook-id": msg_id,
        "webhook-timestamp": str(now),
        "webhook-signature": standard_signature(msg_id, now, body, keys),
    }
