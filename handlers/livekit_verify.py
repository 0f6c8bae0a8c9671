"""LiveKit's webhook signature, checked by the rules of livekit-api's `WebhookReceiver`.

The Authorization header is an HS256 JWT, signed with LiveKit's API secret and issued by its API
key, whose `sha256` claim is the body's SHA-256 (base64). `WebhookReceiver` checks it through
PyJWT, which prepares and vets the key again on every call, and builds the SDK's grant objects:
most of what verifying costs at LiveKit's event rate. Here the key is held ready and the token
is checked with the standard library, by the same rules (a test holds the two to the same
verdicts): alg HS256 and nothing critical in the header, the signature, `exp` present and not
past, `nbf` and `iat` not ahead (each with the SDK's leeway), `iss` the API key, no `aud`, `sub`
and `jti` strings when present, and the body's hash. Anything else is refused.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import time
from functools import lru_cache
from typing import Any

import orjson
from livekit.api.access_token import DEFAULT_LEEWAY


class Refused(Exception):
    """The token does not sign this body; `reason` says which rule (never a secret)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WebhookVerifier:
    """Checks LiveKit's webhook tokens for one API key and secret."""

    def __init__(self, api_key: str, api_secret: str) -> None:
        if not api_key or not api_secret:
            raise ValueError("api_key and api_secret must be set")
        self._issuer = api_key
        self._key = api_secret.encode()
        self._leeway = DEFAULT_LEEWAY.total_seconds()
        # LiveKit signs every event with the same header: the verdict on the last one seen is
        # kept (the raw segment, and the reason it was refused or None), so it is decoded and
        # vetted once rather than for every event.
        self._header: tuple[bytes, str | None] = (b"", "not checked")

    def verify(self, body: bytes, token: str) -> None:
        """Return when `token` signs `body`; raise `Refused` otherwise."""
        try:
            segments = token.encode("ascii").split(b".")
        except UnicodeError:
            raise Refused("token is not ASCII") from None
        if len(segments) != 3:
            raise Refused("token is not three segments")
        head, payload, signature = segments
        seen, refused = self._header
        if head != seen:
            refused = _header_refusal(head)
            self._header = (head, refused)
        if refused is not None:
            raise Refused(refused)
        mac = hmac.new(self._key, head + b"." + payload, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, _segment(signature, "signature")):
            raise Refused("signature does not verify")
        claims = _json_segment(payload, "payload")
        self._check_claims(claims)
        claimed = claims.get("sha256")
        if not claimed or not isinstance(claimed, str):
            raise Refused("sha256 was not found in the token")
        try:
            digest = binascii.a2b_base64(claimed, strict_mode=True)
        except (binascii.Error, ValueError):
            raise Refused("sha256 is not base64") from None
        if not hmac.compare_digest(hashlib.sha256(body).digest(), digest):
            raise Refused("hash mismatch")

    def _check_claims(self, claims: dict[str, Any]) -> None:
        now = time.time()
        if claims.get("exp") is None:
            raise Refused("exp is missing")
        if _number(claims["exp"], "exp") <= now - self._leeway:
            raise Refused("token has expired")
        for name in ("iat", "nbf"):
            if name in claims and _number(claims[name], name) > now + self._leeway:
                raise Refused(f"token is not valid yet ({name})")
        if claims.get("iss") != self._issuer:
            raise Refused("issuer is not the API key")
        if claims.get("aud"):
            raise Refused("token has an audience")
        for name in ("sub", "jti"):
            if name in claims and not isinstance(claims[name], str):
                raise Refused(f"{name} is not a string")


def _header_refusal(head: bytes) -> str | None:
    """Why a token's raw header segment is refused, or None when it is acceptable."""
    try:
        header = _json_segment(head, "header")
    except Refused as exc:
        return exc.reason
    if header.get("alg") != "HS256":
        return "algorithm is not HS256"
    if "crit" in header or "b64" in header:
        return "header has critical extensions"
    if "kid" in header and not isinstance(header["kid"], str):
        return "kid is not a string"
    return None


@lru_cache(maxsize=4)
def verifier(api_key: str, api_secret: str) -> WebhookVerifier:
    """The verifier for one key pair, built once per process."""
    return WebhookVerifier(api_key, api_secret)


def _segment(raw: bytes, what: str) -> bytes:
    """One base64url segment decoded (unpadded, as JWTs are); anything else is refused."""
    try:
        return binascii.a2b_base64(
            raw.replace(b"-", b"+").replace(b"_", b"/") + b"=" * (-len(raw) % 4),
            strict_mode=True,
        )
    except (binascii.Error, ValueError):
        raise Refused(f"{what} is not base64url") from None


def _json_segment(raw: bytes, what: str) -> dict[str, Any]:
    decoded = _segment(raw, what)
    try:
        value = orjson.loads(decoded)
    except orjson.JSONDecodeError:
        # What orjson refuses and PyJWT's `json.loads` still takes (NaN, infinities, UTF-16
        # text) gets PyJWT's reading. Integers beyond 64 bits orjson reads as floats: a time
        # claim that size compares with the clock the same way either way.
        try:
            value = json.loads(decoded)
        except ValueError:
            raise Refused(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise Refused(f"{what} is not a JSON object")
    return value


def _number(value: Any, name: str) -> float:
    """A time claim as PyJWT reads it (`int(value)`), refused when it is not one."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise Refused(f"{name} is not an integer") from None
