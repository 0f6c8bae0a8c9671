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
import json
from collections.abc import Sequence

WEBHOOK_TOKEN_TTL = 300
# The JWT header is the same for every token: encoded once.
_JWT_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")


def body_hmac(body: bytes, secret: str) -> str:
    """plugNmeet's request signature: hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_body_hmac(body: bytes, signature: str, secret: str) -> bool:
    """Constant-time check of a plugNmeet request signature."""
    return hmac.compare_digest(body_hmac(body, secret), signature.strip().lower())


def body_sha256(body: bytes) -> str:
    """base64 SHA-256 of a body, the JWT `sha256` claim LiveKit and plugNmeet use."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def _b64url(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _mac(key: bytes) -> hmac.HMAC:
    """An HMAC-SHA256 keyed once; `.copy()` gives a fresh one without re-deriving the key."""
    return hmac.new(key, digestmod=hashlib.sha256)


class Signer:
    """Every signature of an outgoing attempt, with the keys prepared once per process.

    HS256 by hand: the header never changes and PyJWT would re-validate the key, re-encode the
    header and sort the claims on every attempt, which showed in the worker's profile.
    """

    def __init__(
        self, *, api_key: str, api_secret: str, keys: Sequence[bytes], user_agent: str
    ) -> None:
        self.api_key = api_key
        self.user_agent = user_agent
        self._jwt_mac = _mac(api_secret.encode())
        self._std_macs = tuple(_mac(key) for key in keys)
        # The claims' fixed prefix, JSON-escaped once.
        self._iss = json.dumps(api_key)

    def jwt(self, body: bytes, now: int) -> str:
        """A fresh HS256 token for one attempt; `livekit.api.WebhookReceiver` verifies it."""
        claims = (
            f'{{"iss":{self._iss},"nbf":{now},"iat":{now},"exp":{now + WEBHOOK_TOKEN_TTL},'
            f'"sha256":"{body_sha256(body)}"}}'
        ).encode()
        signing_input = _JWT_HEADER + b"." + _b64url(claims)
        mac = self._jwt_mac.copy()
        mac.update(signing_input)
        return (signing_input + b"." + _b64url(mac.digest())).decode()

    def standard(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """The `webhook-signature` header value: one `v1,` signature per key, space-separated."""
        signed = f"{msg_id}.{timestamp}.".encode() + body
        out = []
        for prepared in self._std_macs:
            mac = prepared.copy()
            mac.update(signed)
            out.append("v1," + base64.b64encode(mac.digest()).decode())
        return " ".join(out)

    def headers(self, *, body: bytes, msg_id: str, now: int) -> dict[str, str]:
        """Every header of one delivery attempt (fresh JWT and timestamp each time)."""
        token = self.jwt(body, now)
        return {
            "Content-Type": "application/json",
            "User-Agent": self.user_agent,
            "Authorization": token,
            "Hash-Token": token,
            "webhook-id": msg_id,
            "webhook-timestamp": str(now),
            "webhook-signature": self.standard(msg_id, now, body),
        }


def webhook_jwt(body: bytes, api_key: str, api_secret: str, now: int) -> str:
    """A fresh token for one attempt; `livekit.api.WebhookReceiver` verifies it."""
    return Signer(api_key=api_key, api_secret=api_secret, keys=(), user_agent="").jwt(body, now)


def standard_signature(msg_id: str, timestamp: int, body: bytes, keys: Sequence[bytes]) -> str:
    """The `webhook-signature` header value: one `v1,` signature per key, space-separated."""
    signer = Signer(api_key="", api_secret="", keys=keys, user_agent="")
    return signer.standard(msg_id, timestamp, body)


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
    signer = Signer(api_key=api_key, api_secret=api_secret, keys=keys, user_agent=user_agent)
    return signer.headers(body=body, msg_id=msg_id, now=now)
