"""The LiveKit client signs one token per set of grants for a while, not one per call."""

from __future__ import annotations

import asyncio

import aiohttp
import jwt
from livekit import api
from livekit.api.room_service import RoomService

from tests.support.api import LK_KEY, LK_SECRET
from worker.livekit import reuse_tokens


def _token(header: dict[str, str]) -> str:
    return header["authorization"].removeprefix("Bearer ")


def _claims(token: str) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(token, LK_SECRET, algorithms=["HS256"])
    return claims


def _video(token: str) -> dict[str, object]:
    video = _claims(token)["video"]
    assert isinstance(video, dict)
    return video


async def test_a_token_without_a_room_is_reused_and_a_room_token_is_signed_per_call() -> None:
    async with aiohttp.ClientSession() as session:
        service = RoomService(session, "http://127.0.0.1:1", LK_KEY, LK_SECRET)
        reuse_tokens(service, reuse_s=600)
        create = api.VideoGrants(room_create=True)
        admin = api.VideoGrants(room_admin=True, room="r1")
        first = _token(service._auth_header(create))
        first_admin = _token(service._auth_header(admin))
        await asyncio.sleep(1.1)  # a token signed now would carry a later `nbf`
        again = _token(service._auth_header(create))
        again_admin = _token(service._auth_header(admin))

    assert again == first
    assert _claims(first)["iss"] == LK_KEY
    assert _video(first)["roomCreate"] is True
    assert again_admin != first_admin
    assert _video(again_admin)["roomAdmin"] is True
    assert _video(again_admin)["room"] == "r1"


async def test_a_reused_token_is_signed_afresh_once_its_reuse_period_is_over() -> None:
    async with aiohttp.ClientSession() as session:
        service = RoomService(session, "http://127.0.0.1:1", LK_KEY, LK_SECRET)
        reuse_tokens(service, reuse_s=1.0)
        create = api.VideoGrants(room_create=True)
        first = _token(service._auth_header(create))
        await asyncio.sleep(1.1)
        later = _token(service._auth_header(create))

    assert later != first
    assert int(str(_claims(later)["nbf"])) > int(str(_claims(first)["nbf"]))
