"""API-key JWT checks as LiveKit does them (pkg/service/auth.go + protocol auth/verifier.go).

Two layers, like the real server:

* the HTTP middleware rejects a malformed header or an invalid/expired token with a
  plain-text 401 before any Twirp routing (:meth:`Authenticator.authenticate`);
* each RoomService method then checks its grant and answers a Twirp ``unauthenticated``
  "permissions denied" error when it is missing (:func:`ensure_create` and friends).

A request without an Authorization header passes the middleware with no grants and fails
the grant check, exactly as on LiveKit.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import jwt

from .errors import PERMISSION_DENIED, TwirpError

BEARER = "Bearer "
# go-jose's jwt.DefaultLeeway, which LiveKit's Verify uses for exp/nbf.
LEEWAY_SECONDS = 60
WEBHOOK_TOKEN_TTL = 300
# The SDK mints a fresh token per call, but identical grants in the same second give the
# same string, so a small cache saves most signature checks under benchmark load.
_CACHE_LIMIT = 4096


class AuthError(Exception):
    """The middleware rejects the request: HTTP 401 with this message as plain text."""


@dataclass(frozen=True, slots=True)
class Grants:
    """The ``video`` grant fields RoomService cares about."""

    room_create: bool = False
    room_list: bool = False
    room_admin: bool = False
    room_record: bool = False
    room: str = ""

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Grants:
        """Read the camelCase ``video`` claim as written by every LiveKit SDK."""
        video = claims.get("video")
        if not isinstance(video, dict):
            return NO_GRANTS
        room = video.get("room")
        return cls(
            room_create=video.get("roomCreate") is True,
            room_list=video.get("roomList") is True,
            room_admin=video.get("roomAdmin") is True,
            room_record=video.get("roomRecord") is True,
            room=room if isinstance(room, str) else "",
        )


NO_GRANTS = Grants()


class Authenticator:
    """Verifies ``Authorization`` headers against the single configured key pair."""

    def __init__(self, api_key: str, api_secret: str) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self._cache: dict[str, tuple[Grants, float]] = {}

    def authenticate(self, header: str | None) -> Grants:
        """Grants carried by the header; raises :class:`AuthError` for a bad header or token."""
        if not header:
            return NO_GRANTS
        if not header.startswith(BEARER):
            raise AuthError("invalid authorization header. Must start with " + BEARER)
        token = header[len(BEARER) :]
        if not token:
            return NO_GRANTS
        cached = self._cache.get(token)
        if cached is not None:
            grants, expires = cached
            if time.time() <= expires + LEEWAY_SECONDS:
                return grants
            del self._cache[token]
        grants, expires = self._verify(token)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[token] = (grants, expires)
        return grants

    def _verify(self, token: str) -> tuple[Grants, float]:
        try:
            claims = jwt.decode(
                token,
                self.api_secret,
                algorithms=["HS256"],
                issuer=self.api_key,
                leeway=LEEWAY_SECONDS,
                # Tokens without exp would verify forever (livekit/protocol#1706).
                options={"require": ["exp"]},
            )
        except jwt.PyJWTError as exc:
            # Only on failure: re-read the token unverified to give LiveKit's specific message
            # (parsing twice on every success would double the cost of authentication).
            raise AuthError(self._failure_message(token, exc)) from exc
        return Grants.from_claims(claims), float(claims["exp"])

    def _failure_message(self, token: str, exc: jwt.PyJWTError) -> str:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return "invalid authorization token"
        issuer = unverified.get("iss")
        if issuer != self.api_key:
            return f"invalid API key: {issuer}"
        return f"invalid token: {token}, error: {exc}"


def _denied() -> TwirpError:
    return TwirpError("unauthenticated", PERMISSION_DENIED)


def ensure_create(grants: Grants) -> None:
    """CreateRoom / DeleteRoom need ``roomCreate``."""
    if not grants.room_create:
        raise _denied()


def ensure_list(grants: Grants) -> None:
    """ListRooms needs ``roomList``."""
    if not grants.room_list:
        raise _denied()


def ensure_record(grants: Grants) -> None:
    """Every Egress call needs ``roomRecord``."""
    if not grants.room_record:
        raise _denied()


def ensure_admin(grants: Grants, room: str) -> None:
    """Per-room calls need ``roomAdmin`` for exactly that room."""
    if not grants.room_admin or grants.room != room:
        raise _denied()


def webhook_token(api_key: str, api_secret: str, body: bytes) -> str:
    """The JWT LiveKit puts (without ``Bearer``) in a webhook's Authorization header.

    Same claims as protocol's AccessToken.ToJWT with SetValidFor(5m).SetSha256(...): iss, nbf,
    exp and the base64 SHA-256 of the exact body bytes.
    """
    now = int(time.time())
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    claims = {"iss": api_key, "nbf": now, "exp": now + WEBHOOK_TOKEN_TTL, "sha256": digest}
    return jwt.encode(claims, api_secret, algorithm="HS256")
