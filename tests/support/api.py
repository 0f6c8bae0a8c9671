"""Test-side clients: a signing plugNmeet API client, deadlines instead of sleeps."""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from worker.webhooks.signing import body_hmac

T = TypeVar("T")

API_KEY = "plugnmeet"
API_SECRET = "zumyyYWqv7KR2kUqvYdq4z4sXg7XTBD2ljT6"
LK_KEY = "devkey"
LK_SECRET = "emulator-secret-that-is-long-enough-for-hs256"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WEBHOOK_SECRET_OLD = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


def seed_request(room_id: str = "room01", **metadata: Any) -> dict[str, Any]:
    """The seed document's example request (optionally with metadata fields replaced)."""
    body: dict[str, Any] = {
        "room_id": room_id,
        "metadata": {
            "room_title": "Test room",
            "welcome_message": "Welcome to room",
            "room_features": {
                "allow_webcams": True,
                "mute_on_start": False,
                "allow_screen_share": True,
                "allow_rtmp": True,
                "admin_only_webcams": False,
                "allow_view_other_webcams": True,
                "allow_view_other_users_list": True,
                "allow_polls": True,
                "room_duration": 0,
                "recording_features": {
                    "is_allow": True,
                    "is_allow_cloud": True,
                    "is_allow_local": True,
                    "enable_auto_cloud_recording": False,
                },
                "chat_features": {"allow_chat": True, "allow_file_upload": True},
                "shared_note_pad_features": {"allowed_shared_note_pad": True},
                "whiteboard_features": {"allowed_whiteboard": True},
                "external_media_player_features": {"allowed_external_media_player": True},
                "waiting_room_features": {"is_active": False},
                "breakout_room_features": {"is_allow": True, "allowed_number_rooms": 2},
                "display_external_link_features": {"is_allow": True},
            },
            "default_lock_settings": {
                "lock_microphone": False,
                "lock_webcam": False,
                "lock_screen_sharing": True,
                "lock_whiteboard": True,
                "lock_shared_notepad": True,
                "lock_chat": False,
                "lock_chat_send_message": False,
                "lock_chat_file_share": False,
                "lock_private_chat": False,
            },
        },
    }
    body["metadata"].update(metadata)
    return body


def minimal_request(room_id: str, **metadata: Any) -> dict[str, Any]:
    """The smallest valid create request."""
    return {
        "room_id": room_id,
        "metadata": {"room_title": room_id, "room_features": {}, **metadata},
    }


class Api:
    """A plugNmeet API client that signs each body like the SDKs do."""

    def __init__(self, url: str, key: str = API_KEY, secret: str = API_SECRET) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.secret = secret
        self.session = aiohttp.ClientSession()
        _OPEN.add(self)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.session.close()

    async def raw(
        self,
        path: str,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        sign: bool = True,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        """POST raw bytes; returns (HTTP status, JSON or text)."""
        hdrs = {"Content-Type": content_type}
        if sign:
            hdrs |= {"API-KEY": self.key, "HASH-SIGNATURE": body_hmac(body, self.secret)}
        hdrs |= headers or {}
        data = io.BytesIO(body)  # aiohttp warns on large raw bytes bodies
        async with self.session.post(self.url + path, data=data, headers=hdrs) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def post(
        self, path: str, payload: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """POST a JSON payload, signed."""
        return await self.raw(path, json.dumps(payload).encode(), headers)

    async def create(self, payload: dict[str, Any], *, asynchronous: bool = False) -> Any:
        """`/auth/room/create`, asserting HTTP 200 (or 202 when asked to be async)."""
        headers = {"Prefer": "respond-async"} if asynchronous else None
        status, body = await self.post("/auth/room/create", payload, headers)
        assert status == (202 if asynchronous else 200), (status, body)
        return body


async def eventually(
    check: Callable[[], Awaitable[T | None] | T | None],
    timeout: float = 10.0,
    what: str = "condition",
    *,
    interval: float = 0.01,
    describe: Callable[[], object] | None = None,
) -> T:
    """Poll `check` (sync or async) until it returns something truthy; fail after `timeout` s.

    The one way tests wait: no sleep stands in for synchronisation. `interval=0` polls as fast as
    `check` answers (to act the moment something happens); `describe` adds what the failure
    message shows (by default the last value `check` returned). An exception `check` raises
    (a process that exited, say) fails at once.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        result = check()
        last = await result if inspect.isawaitable(result) else result  # type: ignore[assignment]
        if last:
            return last
        if time.monotonic() >= deadline:
            shown = describe() if describe is not None else last
            raise AssertionError(f"{what} not reached within {timeout} s (last: {shown!r})")
        await asyncio.sleep(interval)


async def emulator(base_url: str, path: str, method: str = "GET", payload: Any = None) -> Any:
    """Call the emulator's control API (`path` under `/_emulator/`) over HTTP."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{base_url}/_emulator/{path}", json=payload) as resp,
    ):
        body = await resp.json()
        assert resp.status == 200, (path, resp.status, body)
        return body


async def livekit_rooms(base_url: str) -> dict[str, dict[str, Any]]:
    """The rooms the emulator holds, by name."""
    return {r["name"]: r for r in (await emulator(base_url, "rooms"))["rooms"]}


async def livekit_calls(base_url: str, method: str) -> list[dict[str, Any]]:
    """The Twirp calls of one method the emulator received."""
    return list((await emulator(base_url, f"calls?method={method}"))["calls"])


# Clients a failed test never reached `close()` for: closed at its teardown (`close_open_apis`),
# so the failure is reported once instead of again as an unclosed session in a later test.
_OPEN: weakref.WeakSet[Api] = weakref.WeakSet()


async def close_open_apis() -> None:
    """Close every Api client still open (the conftest calls this after each test)."""
    for client in list(_OPEN):
        await client.close()
    _OPEN.clear()
