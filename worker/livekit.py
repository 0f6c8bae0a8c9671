"""LiveKit's RoomService and Egress through `livekit-api`, with real timeouts and typed errors.

The SDK applies no timeout of its own and retries nothing against a self-hosted URL, so every call
is wrapped in `asyncio.timeout`, and its errors are sorted once, here, into `LiveKitUnavailable`
(worth retrying) and `LiveKitRejected` (retrying will not help).
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from google.protobuf.message import Message
from livekit import api

from worker.protodict import message_dict

T = TypeVar("T")

_TRANSIENT_CODES = frozenset({"unavailable", "internal", "resource_exhausted", "deadline_exceeded"})
# How long one signed token (per set of grants) is reused; the SDK's tokens are valid for 6 h.
# Signing a JWT for every call was a tenth of the CPU of a timer's end.
TOKEN_REUSE_S = 600.0


class LiveKitError(Exception):
    """A LiveKit call that did not succeed."""


class LiveKitUnavailable(LiveKitError):
    """LiveKit could not be reached or failed transiently; the call may be retried."""


class LiveKitRejected(LiveKitError):
    """LiveKit refused the call for a reason retrying will not change."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.status = status


def proto_dict(msg: Message) -> dict[str, Any]:
    """A protobuf message as snake_case JSON-ready data (int64 as strings, defaults included)."""
    return message_dict(msg)


def room_dict(room: api.Room) -> dict[str, Any]:
    """The fields of a LiveKit `Room` roomkeeper keeps, with native integers."""
    return {
        "sid": room.sid,
        "name": room.name,
        "empty_timeout": room.empty_timeout,
        "departure_timeout": room.departure_timeout,
        "max_participants": room.max_participants,
        "creation_time": room.creation_time,
        # Deadlines count from here: whole seconds would end rooms up to a second early.
        "creation_time_ms": room.creation_time_ms or room.creation_time * 1000,
        "turn_password": room.turn_password,
        "enabled_codecs": [{"mime": c.mime, "fmtp_line": c.fmtp_line} for c in room.enabled_codecs],
        "metadata": room.metadata,
        "num_participants": room.num_participants,
    }


def reuse_tokens(service: Any, reuse_s: float = TOKEN_REUSE_S) -> None:
    """Make an SDK service sign one token per set of grants every `reuse_s`, not one per call.

    Only grants that name no room are kept (the calls roomkeeper makes per room, CreateRoom and
    DeleteRoom, need none), so the cache stays as small as the set of calls.
    """
    sign = service._auth_header
    signed: dict[str, tuple[float, dict[str, str]]] = {}

    def auth_header(grants: Any, sip: Any = None) -> dict[str, str]:
        if getattr(grants, "room", ""):
            return dict(sign(grants, sip))
        key = repr((grants, sip))
        now = time.monotonic()
        hit = signed.get(key)
        if hit is None or now - hit[0] >= reuse_s:
            hit = signed[key] = (now, sign(grants, sip))
        return dict(hit[1])  # the SDK copies it too; nobody changes the one kept

    service._auth_header = auth_header


def classify(exc: BaseException) -> LiveKitError:
    """Sort an SDK or transport error into unavailable (transient) or rejected (permanent)."""
    if isinstance(exc, api.ServerError):
        if exc.code in _TRANSIENT_CODES or (exc.code == "unknown" and exc.status >= 500):
            return LiveKitUnavailable(f"livekit answered {exc.status} {exc.code}")
        return LiveKitRejected(exc.code, exc.message, exc.status)
    if isinstance(exc, TimeoutError):
        return LiveKitUnavailable("livekit did not answer in time")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return LiveKitUnavailable(f"livekit unreachable ({type(exc).__name__})")
    raise exc


class LiveKit:
    """The RoomService calls roomkeeper makes; build inside a running loop, close with aclose()."""

    def __init__(
        self,
        url: str,
        api_key: str,
        api_secret: str,
        *,
        timeout: float,
        before_call: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.url = url
        self._key = api_key
        self._secret = api_secret
        self._timeout = timeout
        self._before_call = before_call
        self._session = aiohttp.ClientSession()
        self._api = api.LiveKitAPI(url, api_key, api_secret, session=self._session)
        for service in (self._api.room, self._api.egress):
            reuse_tokens(service)

    async def aclose(self) -> None:
        """Close the HTTP session (the SDK never closes a session it was given)."""
        await self._api.aclose()
        await self._session.close()

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        if self._before_call is not None:
            await self._before_call()
        try:
            async with asyncio.timeout(self._timeout):
                return await fn()
        except (api.ServerError, TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise classify(exc) from exc

    async def create_room(
        self,
        name: str,
        *,
        empty_timeout: int,
        max_participants: int,
        metadata: str,
        departure_timeout: int = 0,
    ) -> dict[str, Any]:
        """Get-or-create a room (LiveKit returns an existing one unchanged)."""
        req = api.CreateRoomRequest(
            name=name,
            empty_timeout=empty_timeout,
            departure_timeout=departure_timeout,
            max_participants=max_participants,
            metadata=metadata,
        )
        room = await self._call(lambda: self._api.room.create_room(req))
        return room_dict(room)

    async def delete_room(self, name: str) -> bool:
        """End a room now; False when LiveKit no longer had it (already ended is fine)."""
        try:
            await self._call(lambda: self._api.room.delete_room(api.DeleteRoomRequest(room=name)))
        except LiveKitRejected as exc:
            if exc.code == "not_found":
                return False
            raise
        return True

    async def list_rooms(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        """The rooms LiveKit has (all, or those of `names`)."""
        req = api.ListRoomsRequest(names=names or [])
        res = await self._call(lambda: self._api.room.list_rooms(req))
        return [room_dict(r) for r in res.rooms]

    async def live_sessions(self) -> set[tuple[str, str]]:
        """(name, sid) of every room LiveKit has: what reconciliation compares, without building
        each room's dict (tens of thousands of rooms, on the timers' loop)."""
        res = await self._call(lambda: self._api.room.list_rooms(api.ListRoomsRequest()))
        return {(r.name, r.sid) for r in res.rooms}

    async def list_participants(self, room: str) -> list[dict[str, Any]]:
        """LiveKit's ParticipantInfo of everyone in a room, as snake_case JSON data."""
        req = api.ListParticipantsRequest(room=room)
        res = await self._call(lambda: self._api.room.list_participants(req))
        return [proto_dict(p) for p in res.participants]

    async def start_room_composite_egress(self, req: api.RoomCompositeEgressRequest) -> str:
        """Start recording (or streaming) a room; the new egress id."""
        info = await self._call(lambda: self._api.egress.start_room_composite_egress(req))
        return str(info.egress_id)

    async def active_room_composites(self, room: str) -> list[str]:
        """The ids of the room composite egresses running for `room`."""
        req = api.ListEgressRequest(room_name=room, active=True)
        res = await self._call(lambda: self._api.egress.list_egress(req))
        return [i.egress_id for i in res.items if i.HasField("room_composite")]

    async def stop_egress(self, egress_id: str) -> bool:
        """Stop an egress; False when LiveKit has it no more or it had already ended."""
        req = api.StopEgressRequest(egress_id=egress_id)
        try:
            await self._call(lambda: self._api.egress.stop_egress(req))
        except LiveKitRejected as exc:
            if exc.code in ("not_found", "failed_precondition"):
                return False
            raise
        return True

    def join_token(
        self,
        room: str,
        *,
        identity: str,
        name: str,
        is_admin: bool,
        is_hidden: bool,
        metadata: str,
        ttl: datetime.timedelta,
    ) -> str:
        """A LiveKit access token to join `room` (admins get roomAdmin)."""
        grants = api.VideoGrants(
            room_join=True,
            room=room,
            room_admin=is_admin,
            hidden=is_hidden,
            can_publish=True,
            can_subscribe=True,
            can_publish_data=True,
        )
        return (
            api.AccessToken(self._key, self._secret)
            .with_identity(identity)
            .with_name(name)
            .with_metadata(metadata)
            .with_grants(grants)
            .with_ttl(ttl)
            .to_jwt()
        )
