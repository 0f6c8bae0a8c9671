"""The LiveKit emulator behaves like a LiveKit server, as seen through the real SDK and HTTP."""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from livekit import api
from livekit.protocol import models

from emulator import Emulator
from tests.support.api import eventually

KEY = "APIemulatortest"
SECRET = "emulator-test-secret-that-is-long-enough-for-hs256"
SID = re.compile(r"^(RM|PA|TR|EV)_[0-9A-Za-z]{12}$")
ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ helpers


async def wait_for(
    predicate: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 5.0,
    what: str = "condition",
) -> None:
    """Poll until predicate() is true (the suite's one `eventually`, at this file's pace)."""
    await eventually(predicate, timeout, what, interval=0.02)


def token(grants: api.VideoGrants | None = None, *, secret: str = SECRET, key: str = KEY) -> str:
    """A RoomService token, minted like the SDK does."""
    tok = api.AccessToken(key, secret)
    if grants is not None:
        tok.with_grants(grants)
    return tok.to_jwt()


def bearer(grants: api.VideoGrants | None = None, **kwargs: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + token(grants, **kwargs)}


CREATE = api.VideoGrants(room_create=True)
LIST = api.VideoGrants(room_list=True)


class Receiver:
    """A webhook endpoint: records every request, answers from a scripted status list."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], str]] = []
        self.statuses: collections.deque[int] = collections.deque()
        self.gate: asyncio.Event | None = None
        # Per-room gates: deliveries for these rooms wait until the event is set.
        self.held: dict[str, asyncio.Event] = {}
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode()
        self.requests.append((dict(request.headers), body))
        if self.gate is not None:
            await self.gate.wait()
        room_gate = self.held.get(json.loads(body)["room"]["name"])
        if room_gate is not None:
            await room_gate.wait()
        status = self.statuses.popleft() if self.statuses else 200
        return web.Response(status=status)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]

    def names(self) -> list[str]:
        return [e["event"] for e in self.events()]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhook", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/webhook"

    async def stop(self) -> None:
        for gate in [self.gate, *self.held.values()]:
            if gate is not None:
                gate.set()
        if self._runner is not None:
            await self._runner.cleanup()


# ----------------------------------------------------------------- fixtures


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    await rec.start()
    yield rec
    await rec.stop()


@pytest.fixture
async def emu(receiver: Receiver) -> AsyncIterator[Emulator]:
    async with Emulator(KEY, SECRET, webhook_urls=[receiver.url], tick_interval=0.1) as e:
        yield e


@pytest.fixture
async def lk(emu: Emulator) -> AsyncIterator[api.LiveKitAPI]:
    client = api.LiveKitAPI(emu.url, KEY, SECRET)
    yield client
    await client.aclose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def twirp(
    http: aiohttp.ClientSession,
    emu: Emulator,
    method: str,
    body: bytes | str,
    *,
    headers: dict[str, str],
    content_type: str = "application/json",
    http_method: str = "POST",
) -> tuple[int, str, bytes]:
    """A raw RoomService request; returns (status, content type, body)."""
    url = f"{emu.url}/twirp/livekit.RoomService/{method}"
    all_headers = {"Content-Type": content_type, **headers}
    async with http.request(http_method, url, data=body, headers=all_headers) as resp:
        return resp.status, resp.content_type, await resp.read()


async def control(
    http: aiohttp.ClientSession, emu: Emulator, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, f"{emu.url}/_emulator{path}", json=body) as resp:
        return resp.status, await resp.json()


async def join(
    http: aiohttp.ClientSession, emu: Emulator, room: str, identity: str, **extra: str
) -> tuple[int, Any]:
    return await control(
        http, emu, "POST", f"/rooms/{room}/participants", {"identity": identity, **extra}
    )


# ---------------------------------------------------------------- RoomService


async def test_create_room_returns_a_room_with_livekit_defaults(lk: api.LiveKitAPI) -> None:
    before = time.time()
    room = await lk.room.create_room(api.CreateRoomRequest(name="defaults", metadata="hello"))
    assert SID.match(room.sid)
    assert room.sid.startswith("RM_")
    assert room.name == "defaults"
    assert room.empty_timeout == 300
    assert room.departure_timeout == 20
    assert room.max_participants == 0
    assert room.metadata == "hello"
    assert int(before) <= room.creation_time <= time.time()
    assert int(before * 1000) <= room.creation_time_ms <= time.time() * 1000
    assert room.turn_password
    mimes = [c.mime for c in room.enabled_codecs]
    for mime in ("audio/opus", "audio/red", "video/VP8", "video/H264", "video/VP9", "video/AV1"):
        assert mime in mimes
    assert room.num_participants == 0
    assert room.num_publishers == 0


async def test_create_room_applies_requested_timeouts_and_limits(lk: api.LiveKitAPI) -> None:
    room = await lk.room.create_room(
        api.CreateRoomRequest(
            name="custom", empty_timeout=7, departure_timeout=3, max_participants=2
        )
    )
    assert (room.empty_timeout, room.departure_timeout, room.max_participants) == (7, 3, 2)


async def test_create_existing_room_returns_it_unchanged(lk: api.LiveKitAPI) -> None:
    first = await lk.room.create_room(api.CreateRoomRequest(name="same", metadata="v1"))
    second = await lk.room.create_room(
        api.CreateRoomRequest(name="same", metadata="v2", empty_timeout=5, departure_timeout=5)
    )
    assert second.sid == first.sid
    assert second.metadata == "v1"
    assert (second.empty_timeout, second.departure_timeout) == (300, 20)
    assert second.creation_time_ms == first.creation_time_ms


async def test_create_room_rejects_bad_names_and_oversized_metadata(lk: api.LiveKitAPI) -> None:
    bad_requests = [
        api.CreateRoomRequest(name=""),
        api.CreateRoomRequest(name="x" * 257),
        api.CreateRoomRequest(name="big", metadata="m" * (512 * 1024 + 1)),
    ]
    for request in bad_requests:
        with pytest.raises(api.ServerError) as info:
            await lk.room.create_room(request)
        assert (info.value.code, info.value.status) == ("invalid_argument", 400)
    # The limits themselves are allowed.
    await lk.room.create_room(api.CreateRoomRequest(name="x" * 256, metadata="m" * 512 * 1024))
    rooms = await lk.room.list_rooms(api.ListRoomsRequest())
    assert [r.name for r in rooms.rooms] == ["x" * 256]


async def test_list_rooms_returns_all_rooms_or_only_the_named_ones(lk: api.LiveKitAPI) -> None:
    for name in ("a", "b", "c"):
        await lk.room.create_room(api.CreateRoomRequest(name=name))
    everything = await lk.room.list_rooms(api.ListRoomsRequest())
    assert sorted(r.name for r in everything.rooms) == ["a", "b", "c"]
    named = await lk.room.list_rooms(api.ListRoomsRequest(names=["c", "missing", "a"]))
    assert sorted(r.name for r in named.rooms) == ["a", "c"]


async def test_delete_room_removes_it(lk: api.LiveKitAPI) -> None:
    await lk.room.create_room(api.CreateRoomRequest(name="doomed"))
    await lk.room.delete_room(api.DeleteRoomRequest(room="doomed"))
    rooms = await lk.room.list_rooms(api.ListRoomsRequest())
    assert rooms.rooms == []


async def test_delete_unknown_room_is_not_found_with_livekit_message(lk: api.LiveKitAPI) -> None:
    with pytest.raises(api.ServerError) as info:
        await lk.room.delete_room(api.DeleteRoomRequest(room="never-existed"))
    err = info.value
    assert (err.code, err.status, err.message) == (
        "not_found",
        404,
        "requested room does not exist",
    )


async def test_participants_joined_via_control_api_are_visible_through_room_service(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession
) -> None:
    await lk.room.create_room(api.CreateRoomRequest(name="meet"))
    status, body = await join(http, emu, "meet", "alice", name="Alice", metadata="{}")
    assert status == 200
    joined = body["participant"]
    assert SID.match(joined["sid"])
    assert joined["sid"].startswith("PA_")
    assert joined["state"] == "ACTIVE"
    assert joined["identity"] == "alice"
    assert int(joined["joined_at"]) <= time.time()
    await join(http, emu, "meet", "bob")

    listed = await lk.room.list_participants(api.ListParticipantsRequest(room="meet"))
    assert sorted(p.identity for p in listed.participants) == ["alice", "bob"]
    alice = await lk.room.get_participant(
        api.RoomParticipantIdentity(room="meet", identity="alice")
    )
    assert (alice.sid, alice.name, alice.metadata) == (joined["sid"], "Alice", "{}")
    assert alice.state == models.ParticipantInfo.ACTIVE
    rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=["meet"]))
    assert rooms.rooms[0].num_participants == 2


async def test_get_participant_of_unknown_identity_is_not_found(
    lk: api.LiveKitAPI,
) -> None:
    await lk.room.create_room(api.CreateRoomRequest(name="meet"))
    with pytest.raises(api.ServerError) as info:
        await lk.room.get_participant(api.RoomParticipantIdentity(room="meet", identity="ghost"))
    assert (info.value.code, info.value.status) == ("not_found", 404)


async def test_remove_participant_disconnects_them_once(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession
) -> None:
    await lk.room.create_room(api.CreateRoomRequest(name="meet"))
    await join(http, emu, "meet", "alice")
    await lk.room.remove_participant(api.RoomParticipantIdentity(room="meet", identity="alice"))
    listed = await lk.room.list_participants(api.ListParticipantsRequest(room="meet"))
    assert list(listed.participants) == []
    with pytest.raises(api.ServerError) as info:
        await lk.room.remove_participant(api.RoomParticipantIdentity(room="meet", identity="alice"))
    assert info.value.code == "not_found"


async def test_update_room_metadata_updates_and_returns_the_room(lk: api.LiveKitAPI) -> None:
    created = await lk.room.create_room(api.CreateRoomRequest(name="meta", metadata="old"))
    updated = await lk.room.update_room_metadata(
        api.UpdateRoomMetadataRequest(room="meta", metadata="new")
    )
    assert (updated.sid, updated.metadata) == (created.sid, "new")
    rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=["meta"]))
    assert rooms.rooms[0].metadata == "new"
    with pytest.raises(api.ServerError) as info:
        await lk.room.update_room_metadata(api.UpdateRoomMetadataRequest(room="nope", metadata="x"))
    assert info.value.code == "not_found"


async def test_publishing_tracks_updates_num_publishers(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession
) -> None:
    await lk.room.create_room(api.CreateRoomRequest(name="pub"))
    await join(http, emu, "pub", "alice")
    status, body = await control(
        http, emu, "POST", "/rooms/pub/participants/alice/tracks", {"type": "AUDIO", "name": "mic"}
    )
    assert status == 200
    track = body["track"]
    assert SID.match(track["sid"])
    assert track["sid"].startswith("TR_")
    assert (track["type"], track["source"], track["name"]) == ("AUDIO", "MICROPHONE", "mic")
    rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=["pub"]))
    assert rooms.rooms[0].num_publishers == 1
    alice = await lk.room.get_participant(api.RoomParticipantIdentity(room="pub", identity="alice"))
    assert [t.sid for t in alice.tracks] == [track["sid"]]
    assert alice.is_publisher

    status, _ = await control(
        http, emu, "DELETE", f"/rooms/pub/participants/alice/tracks/{track['sid']}"
    )
    assert status == 200
    alice = await lk.room.get_participant(api.RoomParticipantIdentity(room="pub", identity="alice"))
    assert list(alice.tracks) == []


# ------------------------------------------------------------------ wire format


async def test_json_requests_get_snake_case_json_with_int64_as_strings(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    request = json.dumps({"name": "json-room", "emptyTimeout": 60, "metadata": "m"})
    status, ctype, raw = await twirp(http, emu, "CreateRoom", request, headers=bearer(CREATE))
    assert (status, ctype) == (200, "application/json")
    room = json.loads(raw)
    assert room["name"] == "json-room"
    assert room["empty_timeout"] == 60
    assert isinstance(room["creation_time"], str)
    assert int(room["creation_time"]) > 0
    assert isinstance(room["creation_time_ms"], str)
    assert "emptyTimeout" not in room
    assert "creationTime" not in room
    assert room["enabled_codecs"][0] == {"mime": "audio/opus", "fmtp_line": ""}

    status, ctype, raw = await twirp(http, emu, "ListRooms", "{}", headers=bearer(LIST))
    assert (status, ctype) == (200, "application/json")
    assert [r["sid"] for r in json.loads(raw)["rooms"]] == [room["sid"]]


async def test_protobuf_requests_get_protobuf_replies(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    request = api.CreateRoomRequest(name="pb-room").SerializeToString()
    status, ctype, raw = await twirp(
        http,
        emu,
        "CreateRoom",
        request,
        headers=bearer(CREATE),
        content_type="application/protobuf",
    )
    assert (status, ctype) == (200, "application/protobuf")
    assert models.Room.FromString(raw).name == "pb-room"


@pytest.mark.parametrize(
    ("method", "http_method", "content_type"),
    [
        ("ListRooms", "GET", "application/json"),
        ("NoSuchMethod", "POST", "application/json"),
        ("ListRooms", "POST", "text/plain"),
    ],
)
async def test_wrong_method_path_or_content_type_is_twirp_bad_route(
    emu: Emulator, http: aiohttp.ClientSession, method: str, http_method: str, content_type: str
) -> None:
    status, ctype, raw = await twirp(
        http,
        emu,
        method,
        "{}",
        headers=bearer(LIST),
        content_type=content_type,
        http_method=http_method,
    )
    assert (status, ctype) == (404, "application/json")
    assert json.loads(raw)["code"] == "bad_route"


async def test_unknown_service_is_twirp_bad_route(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    url = f"{emu.url}/twirp/livekit.Ingress/ListIngress"
    headers = {"Content-Type": "application/json", **bearer(LIST)}
    async with http.post(url, data="{}", headers=headers) as resp:
        assert resp.status == 404
        assert (await resp.json())["code"] == "bad_route"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/json", b"{not json"), ("application/protobuf", b"\xff\xff\xff\xff")],
)
async def test_undecodable_body_is_twirp_malformed(
    emu: Emulator, http: aiohttp.ClientSession, content_type: str, body: bytes
) -> None:
    status, _, raw = await twirp(
        http, emu, "CreateRoom", body, headers=bearer(CREATE), content_type=content_type
    )
    assert status == 400
    assert json.loads(raw)["code"] == "malformed"


# ------------------------------------------------------------------------ auth


async def test_authorization_without_bearer_prefix_is_plain_text_401(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    status, ctype, raw = await twirp(
        http, emu, "ListRooms", "{}", headers={"Authorization": token(LIST)}
    )
    assert (status, ctype) == (401, "text/plain")
    assert b"Bearer" in raw


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(
            lambda: token(LIST, secret="another-secret-that-is-also-long-enough"), id="wrong-secret"
        ),
        pytest.param(lambda: token(LIST, key="APIunknown"), id="unknown-key"),
        pytest.param(
            lambda: jwt.encode(
                {"iss": KEY, "exp": int(time.time()) - 120, "video": {"roomList": True}},
                SECRET,
                algorithm="HS256",
            ),
            id="expired",
        ),
        pytest.param(
            lambda: jwt.encode(
                {"iss": KEY, "nbf": int(time.time()) + 600, "exp": int(time.time()) + 900},
                SECRET,
                algorithm="HS256",
            ),
            id="not-yet-valid",
        ),
        pytest.param(lambda: "not-a-jwt", id="garbage"),
    ],
)
async def test_invalid_token_is_plain_text_401(
    emu: Emulator, http: aiohttp.ClientSession, make_token: Callable[[], str]
) -> None:
    status, ctype, _ = await twirp(
        http, emu, "ListRooms", "{}", headers={"Authorization": "Bearer " + make_token()}
    )
    assert (status, ctype) == (401, "text/plain")


async def test_sdk_with_wrong_secret_sees_unknown_401(emu: Emulator) -> None:
    client = api.LiveKitAPI(emu.url, KEY, "a-wrong-secret-that-is-long-enough-for-hs256")
    try:
        with pytest.raises(api.ServerError) as info:
            await client.room.list_rooms(api.ListRoomsRequest())
        assert (info.value.code, info.value.status) == ("unknown", 401)
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("method", "grants"),
    [
        ("CreateRoom", LIST),
        ("DeleteRoom", LIST),
        ("ListRooms", CREATE),
        ("ListParticipants", api.VideoGrants(room_admin=True, room="other-room")),
        ("GetParticipant", api.VideoGrants(room_list=True, room="r")),
        ("UpdateRoomMetadata", api.VideoGrants(room_admin=True, room="other-room")),
        ("ListRooms", None),
    ],
)
async def test_missing_grant_is_unauthenticated_permissions_denied(
    emu: Emulator, http: aiohttp.ClientSession, method: str, grants: api.VideoGrants | None
) -> None:
    headers = bearer(grants) if grants is not None else {}
    body = json.dumps({"name": "r", "room": "r", "identity": "i"} if method != "ListRooms" else {})
    status, ctype, raw = await twirp(http, emu, method, body, headers=headers)
    assert (status, ctype) == (401, "application/json")
    assert json.loads(raw) == {"code": "unauthenticated", "msg": "permissions denied"}


async def test_room_admin_grant_works_for_its_own_room(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession
) -> None:
    await lk.room.create_room(api.CreateRoomRequest(name="mine"))
    admin = bearer(api.VideoGrants(room_admin=True, room="mine"))
    status, _, raw = await twirp(http, emu, "ListParticipants", '{"room": "mine"}', headers=admin)
    assert status == 200
    assert json.loads(raw) == {"participants": []}


# ------------------------------------------------------------------ idle rooms


async def rooms_named(lk: api.LiveKitAPI, name: str) -> list[models.Room]:
    return list((await lk.room.list_rooms(api.ListRoomsRequest(names=[name]))).rooms)


async def test_room_nobody_joined_closes_at_creation_plus_empty_timeout(
    lk: api.LiveKitAPI, receiver: Receiver
) -> None:
    room = await lk.room.create_room(api.CreateRoomRequest(name="idle", empty_timeout=1))
    await lk.room.create_room(api.CreateRoomRequest(name="keeps"))

    async def gone() -> bool:
        return not await rooms_named(lk, "idle")

    await wait_for(gone, timeout=4, what="idle room to close")
    # Whole seconds, like LiveKit: never before creation_time + empty_timeout.
    assert time.time() >= room.creation_time + 1
    assert await rooms_named(lk, "keeps")
    await wait_for(lambda: "room_finished" in receiver.names(), what="room_finished webhook")
    finished = [e for e in receiver.events() if e["event"] == "room_finished"]
    assert finished[0]["room"]["sid"] == room.sid
    assert finished[0]["roomEndReason"] == "ROOM_END_IDLE_TIMEOUT"


@pytest.mark.slow
async def test_room_stays_open_while_occupied_and_closes_departure_timeout_after_last_left(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession
) -> None:
    room = await lk.room.create_room(
        api.CreateRoomRequest(name="dept", empty_timeout=1, departure_timeout=1)
    )
    await join(http, emu, "dept", "alice")
    # Let the empty timeout pass with someone inside, and make sure the ticker looked at it.
    await wait_for(lambda: int(time.time()) >= room.creation_time + 2, what="empty timeout")
    checks = emu.state.idle_checks
    await wait_for(lambda: emu.state.idle_checks > checks + 1, what="two idle checks")
    assert await rooms_named(lk, "dept")

    status, _ = await control(http, emu, "DELETE", "/rooms/dept/participants/alice")
    assert status == 200
    left_at = int(time.time())

    async def gone() -> bool:
        return not await rooms_named(lk, "dept")

    await wait_for(gone, timeout=4, what="room to close after departure timeout")
    assert time.time() >= left_at + 1


async def test_agent_and_egress_participants_do_not_keep_a_room_open(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession
) -> None:
    await lk.room.create_room(api.CreateRoomRequest(name="bots", empty_timeout=1))
    assert (await join(http, emu, "bots", "agent", kind="AGENT"))[0] == 200
    assert (await join(http, emu, "bots", "recorder", kind="EGRESS"))[0] == 200
    rooms = await rooms_named(lk, "bots")
    assert rooms[0].num_participants == 0

    async def gone() -> bool:
        return not await rooms_named(lk, "bots")

    await wait_for(gone, timeout=4, what="room with only agents to close")


async def test_control_join_honours_max_participants_and_unique_identities(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession
) -> None:
    await lk.room.create_room(api.CreateRoomRequest(name="small", max_participants=1))
    assert (await join(http, emu, "small", "alice"))[0] == 200
    assert await join(http, emu, "small", "bob") == (409, {"error": "room is full"})
    # Agents are dependent participants and don't take a seat.
    assert (await join(http, emu, "small", "helper", kind="AGENT"))[0] == 200
    status, body = await join(http, emu, "small", "alice")
    assert status == 409
    assert "error" in body
    assert (await join(http, emu, "nowhere", "alice"))[0] == 404
    assert (await control(http, emu, "DELETE", "/rooms/small/participants/ghost"))[0] == 404


# -------------------------------------------------------------------- webhooks


async def test_webhooks_are_signed_like_livekit_and_accepted_by_webhook_receiver(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    room = await lk.room.create_room(api.CreateRoomRequest(name="hooks"))
    await join(http, emu, "hooks", "alice")
    _, body = await control(
        http, emu, "POST", "/rooms/hooks/participants/alice/tracks", {"type": "VIDEO"}
    )
    track_sid = body["track"]["sid"]
    await control(http, emu, "DELETE", f"/rooms/hooks/participants/alice/tracks/{track_sid}")
    await control(http, emu, "DELETE", "/rooms/hooks/participants/alice")
    await lk.room.delete_room(api.DeleteRoomRequest(room="hooks"))

    expected = [
        "room_started",
        "participant_joined",
        "track_published",
        "track_unpublished",
        "participant_left",
        "room_finished",
    ]
    await wait_for(lambda: len(receiver.requests) == len(expected), what="six webhooks")
    assert receiver.names() == expected

    verifier = api.WebhookReceiver(api.TokenVerifier(KEY, SECRET))
    for headers, raw in receiver.requests:
        assert headers["Content-Type"] == "application/webhook+json"
        assert headers["User-Agent"] == "LiveKit"
        auth = headers["Authorization"]
        assert not auth.startswith("Bearer")
        event = verifier.receive(raw, auth)
        assert event.room.sid == room.sid
        assert SID.match(event.id)
        claims = jwt.decode(auth, SECRET, algorithms=["HS256"], issuer=KEY)
        assert claims["exp"] - claims["nbf"] == 300
        assert claims["sha256"] == base64.b64encode(hashlib.sha256(raw.encode()).digest()).decode()

    events = receiver.events()
    started = events[0]
    assert re.fullmatch(r"\d+", started["createdAt"])
    assert "creationTime" in started["room"]
    assert started["room"]["name"] == "hooks"
    assert "emptyTimeout" in started["room"]
    assert events[1]["participant"]["identity"] == "alice"
    assert events[1]["participant"]["state"] == "ACTIVE"
    published = events[2]
    assert published["room"] == {"sid": room.sid, "name": "hooks"}
    assert published["track"]["sid"] == track_sid
    assert published["participant"]["identity"] == "alice"
    assert events[4]["participant"]["state"] == "DISCONNECTED"

    # Tampering is detected by the SDK's receiver.
    headers, raw = receiver.requests[0]
    with pytest.raises(Exception, match="hash mismatch"):
        verifier.receive(raw.replace("hooks", "hookz"), headers["Authorization"])

    status, listing = await control(http, emu, "GET", "/webhooks?event=track_published")
    assert status == 200
    [record] = listing["webhooks"]
    assert record["body"] == receiver.requests[2][1]
    assert (record["delivered"], record["dropped"], record["attempts"], record["status"]) == (
        True,
        False,
        1,
        200,
    )
    assert record["url"] == receiver.url
    assert record["room"] == "hooks"


async def test_create_existing_room_sends_no_second_room_started(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    await lk.room.create_room(api.CreateRoomRequest(name="once"))
    await lk.room.create_room(api.CreateRoomRequest(name="once"))
    await lk.room.update_room_metadata(api.UpdateRoomMetadataRequest(room="once", metadata="x"))
    await lk.room.delete_room(api.DeleteRoomRequest(room="once"))
    await wait_for(lambda: "room_finished" in receiver.names(), what="room_finished")
    assert receiver.names() == ["room_started", "room_finished"]


async def test_delete_room_sends_participant_left_for_everyone_then_room_finished(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    await lk.room.create_room(api.CreateRoomRequest(name="full"))
    for identity in ("alice", "bob", "bot"):
        await join(http, emu, "full", identity, **({"kind": "AGENT"} if identity == "bot" else {}))
    await lk.room.delete_room(api.DeleteRoomRequest(room="full"))
    await wait_for(lambda: len(receiver.requests) == 8, what="eight webhooks")
    events = receiver.events()
    assert [e["event"] for e in events[4:]] == ["participant_left"] * 3 + ["room_finished"]
    assert {e["participant"]["identity"] for e in events[4:7]} == {"alice", "bob", "bot"}
    assert {e["participant"]["disconnectReason"] for e in events[4:7]} == {"ROOM_DELETED"}
    assert events[7]["roomEndReason"] == "ROOM_END_API_DELETE"


async def test_remove_participant_sends_participant_left(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    await lk.room.create_room(api.CreateRoomRequest(name="kick"))
    await join(http, emu, "kick", "alice")
    await lk.room.remove_participant(api.RoomParticipantIdentity(room="kick", identity="alice"))
    await wait_for(lambda: len(receiver.requests) == 3, what="three webhooks")
    left = receiver.events()[2]
    assert left["event"] == "participant_left"
    assert left["participant"]["disconnectReason"] == "PARTICIPANT_REMOVED"


async def test_webhooks_are_fifo_per_room_while_rooms_proceed_independently(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    rooms = [f"order-{i}" for i in range(5)]
    stuck = receiver.held["order-0"] = asyncio.Event()  # this room's receiver hangs
    expected: dict[str, list[str]] = {}
    for name in rooms:
        await lk.room.create_room(api.CreateRoomRequest(name=name))
        expected[name] = ["room_started"]
    for i in range(6):
        for name in rooms:
            await join(http, emu, name, f"p{i}")
            expected[name].append(f"participant_joined:p{i}")
    total = sum(len(v) for v in expected.values())
    # Every other room is delivered in full while order-0 has one request stuck in flight.
    others = total - len(expected["order-0"]) + 1
    await wait_for(lambda: len(receiver.requests) == others, what="other rooms' webhooks")
    assert [e["room"]["name"] for e in receiver.events()].count("order-0") == 1
    stuck.set()
    await wait_for(lambda: len(receiver.requests) == total, what="all webhooks")
    seen: dict[str, list[str]] = collections.defaultdict(list)
    for event in receiver.events():
        label = event["event"]
        if "participant" in event:
            label += ":" + event["participant"]["identity"]
        seen[event["room"]["name"]].append(label)
    assert seen == expected


async def test_webhook_is_retried_on_503_until_delivered(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    receiver.statuses.extend([503, 503])
    await lk.room.create_room(api.CreateRoomRequest(name="retry"))
    await wait_for(lambda: len(receiver.requests) == 3, what="three attempts")
    bodies = {body for _, body in receiver.requests}
    assert len(bodies) == 1  # the same event each time

    async def delivered() -> bool:
        _, data = await control(http, emu, "GET", "/webhooks")
        return bool(data["webhooks"][0]["delivered"])

    await wait_for(delivered, what="delivery recorded")
    _, data = await control(http, emu, "GET", "/webhooks")
    assert data["webhooks"][0]["attempts"] == 3
    _, stats = await control(http, emu, "GET", "/stats")
    assert (stats["webhooks_sent"], stats["webhooks_failed"]) == (1, 0)


async def test_webhook_gives_up_after_five_attempts(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    receiver.statuses.extend([500] * 10)
    await lk.room.create_room(api.CreateRoomRequest(name="failing"))

    async def failed() -> bool:
        _, stats = await control(http, emu, "GET", "/stats")
        return bool(stats["webhooks_failed"] == 1)

    await wait_for(failed, what="webhook to be given up")
    assert len(receiver.requests) == 5
    _, data = await control(http, emu, "GET", "/webhooks")
    record = data["webhooks"][0]
    assert (record["attempts"], record["status"], record["delivered"]) == (5, 500, False)


async def test_webhook_queue_deeper_than_limit_drops_events(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    await control(http, emu, "POST", "/config", {"webhook_max_depth": 2})
    receiver.gate = asyncio.Event()  # hold the first delivery in flight
    await lk.room.create_room(api.CreateRoomRequest(name="deep"))
    await wait_for(lambda: len(receiver.requests) == 1, what="first delivery in flight")
    for identity in ("a", "b", "c"):
        await join(http, emu, "deep", identity)
    _, stats = await control(http, emu, "GET", "/stats")
    assert stats["webhooks_dropped"] == 1
    receiver.gate.set()
    await wait_for(lambda: len(receiver.requests) == 3, what="queued deliveries")
    assert [e.get("participant", {}).get("identity") for e in receiver.events()] == [None, "a", "b"]
    _, data = await control(http, emu, "GET", "/webhooks?event=participant_joined")
    assert [w["dropped"] for w in data["webhooks"]] == [False, False, True]


async def test_webhook_waiting_longer_than_max_age_is_dropped(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    await control(http, emu, "POST", "/config", {"webhook_max_age": 0.2})
    receiver.gate = asyncio.Event()
    await lk.room.create_room(api.CreateRoomRequest(name="stale"))
    await wait_for(lambda: len(receiver.requests) == 1, what="first delivery in flight")
    await join(http, emu, "stale", "late")
    queued_at = time.monotonic()
    await wait_for(lambda: time.monotonic() - queued_at > 0.3, what="event to age")
    receiver.gate.set()

    async def dropped() -> bool:
        _, stats = await control(http, emu, "GET", "/stats")
        return bool(stats["webhooks_dropped"] == 1)

    await wait_for(dropped, what="stale event to be dropped")
    assert receiver.names() == ["room_started"]
    _, data = await control(http, emu, "GET", "/webhooks?event=participant_joined")
    assert [(w["dropped"], w["attempts"]) for w in data["webhooks"]] == [(True, 0)]


# ------------------------------------------------------------- fault injection


async def test_fault_fails_the_next_n_matching_calls_with_the_given_code(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession
) -> None:
    status, _ = await control(
        http, emu, "POST", "/faults", {"method": "CreateRoom", "count": 2, "code": "unavailable"}
    )
    assert status == 200
    await lk.room.list_rooms(api.ListRoomsRequest())  # other methods are unaffected
    for _ in range(2):
        with pytest.raises(api.ServerError) as info:
            await lk.room.create_room(api.CreateRoomRequest(name="flaky"))
        assert (info.value.code, info.value.status) == ("unavailable", 503)
    await lk.room.create_room(api.CreateRoomRequest(name="flaky"))
    _, data = await control(http, emu, "GET", "/calls?method=CreateRoom")
    assert [(c["status"], c["code"]) for c in data["calls"]] == [
        (503, "unavailable"),
        (503, "unavailable"),
        (200, ""),
    ]
    assert (await control(http, emu, "GET", "/faults"))[1] == {"faults": []}


async def test_fault_can_override_http_status_and_message(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession
) -> None:
    await control(
        http,
        emu,
        "POST",
        "/faults",
        {"method": "DeleteRoom", "count": 1, "code": "internal", "http_status": 502, "msg": "boom"},
    )
    with pytest.raises(api.ServerError) as info:
        await lk.room.delete_room(api.DeleteRoomRequest(room="x"))
    assert (info.value.code, info.value.status, info.value.message) == ("internal", 502, "boom")


async def test_wildcard_fault_with_count_minus_one_lasts_until_cleared(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession
) -> None:
    await control(
        http, emu, "POST", "/faults", {"method": "*", "count": -1, "code": "resource_exhausted"}
    )
    for _ in range(3):
        with pytest.raises(api.ServerError) as info:
            await lk.room.list_rooms(api.ListRoomsRequest())
        assert (info.value.code, info.value.status) == ("resource_exhausted", 429)
    assert (await control(http, emu, "DELETE", "/faults"))[0] == 200
    await lk.room.list_rooms(api.ListRoomsRequest())


async def test_faults_apply_in_the_order_they_were_queued(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession
) -> None:
    for code in ("internal", "not_found"):
        await control(
            http, emu, "POST", "/faults", {"method": "ListRooms", "count": 1, "code": code}
        )
    codes = []
    for _ in range(2):
        with pytest.raises(api.ServerError) as info:
            await lk.room.list_rooms(api.ListRoomsRequest())
        codes.append(info.value.code)
    assert codes == ["internal", "not_found"]


async def test_latency_fault_delays_the_call_then_answers_normally(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession
) -> None:
    await control(http, emu, "POST", "/faults", {"method": "CreateRoom", "latency_ms": 300})
    started = time.monotonic()
    room = await lk.room.create_room(api.CreateRoomRequest(name="slow"))
    assert time.monotonic() - started >= 0.3
    assert room.name == "slow"
    started = time.monotonic()
    await lk.room.create_room(api.CreateRoomRequest(name="fast"))
    assert time.monotonic() - started < 0.3


async def test_drop_connection_fault_closes_the_socket_without_an_answer(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession
) -> None:
    await control(
        http, emu, "POST", "/faults", {"method": "DeleteRoom", "count": 1, "drop_connection": True}
    )
    with pytest.raises(aiohttp.ClientError):
        await lk.room.delete_room(api.DeleteRoomRequest(room="any"))
    _, data = await control(http, emu, "GET", "/calls?method=DeleteRoom")
    assert data["calls"][0]["status"] == 0
    with pytest.raises(api.ServerError):  # next call is answered again (room does not exist)
        await lk.room.delete_room(api.DeleteRoomRequest(room="any"))


async def test_invalid_fault_is_rejected(emu: Emulator, http: aiohttp.ClientSession) -> None:
    for body in ({"method": "Nope"}, {"code": "teapot"}, {"count": 0}):
        status, data = await control(http, emu, "POST", "/faults", body)
        assert status == 400
        assert "error" in data


# ------------------------------------------------------------------ control API


async def test_health_stats_and_call_log_report_what_happened(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession
) -> None:
    assert await control(http, emu, "GET", "/health") == (200, {"ok": True})
    before = time.time()
    await lk.room.create_room(api.CreateRoomRequest(name="s1"))
    await lk.room.create_room(api.CreateRoomRequest(name="s2"))
    with pytest.raises(api.ServerError):
        await lk.room.delete_room(api.DeleteRoomRequest(room="zzz"))
    _, stats = await control(http, emu, "GET", "/stats")
    assert stats["rooms"] == 2
    assert stats["calls"] == {"CreateRoom": 2, "DeleteRoom": 1}
    assert {"webhooks_sent", "webhooks_failed", "webhooks_dropped"} <= stats.keys()

    _, data = await control(http, emu, "GET", "/calls")
    calls = data["calls"]
    assert [(c["method"], c["room"], c["status"], c["code"]) for c in calls] == [
        ("CreateRoom", "s1", 200, ""),
        ("CreateRoom", "s2", 200, ""),
        ("DeleteRoom", "zzz", 404, "not_found"),
    ]
    assert all(c["content_type"] == "application/protobuf" for c in calls)
    assert before <= calls[0]["at"] <= calls[1]["at"] <= time.time()

    _, data = await control(http, emu, "GET", "/rooms/s1")
    assert data["name"] == "s1"
    assert data["participants"] == []
    assert isinstance(data["creation_time"], str)
    assert (await control(http, emu, "GET", "/rooms/none"))[0] == 404
    _, data = await control(http, emu, "GET", "/rooms")
    assert [r["name"] for r in data["rooms"]] == ["s1", "s2"]

    assert (await control(http, emu, "DELETE", "/calls"))[0] == 200
    assert (await control(http, emu, "GET", "/calls"))[1] == {"calls": []}


async def test_reset_clears_rooms_calls_webhooks_and_faults_but_keeps_config(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    await control(http, emu, "POST", "/config", {"departure_timeout": 5})
    await lk.room.create_room(api.CreateRoomRequest(name="gone-soon"))
    await wait_for(lambda: len(receiver.requests) == 1, what="room_started")
    await control(http, emu, "POST", "/faults", {"method": "ListRooms", "count": -1})
    assert (await control(http, emu, "POST", "/reset"))[0] == 200
    _, stats = await control(http, emu, "GET", "/stats")
    assert (stats["rooms"], stats["calls"]) == (0, {})
    assert (await control(http, emu, "GET", "/webhooks"))[1] == {"webhooks": []}
    assert (await control(http, emu, "GET", "/faults"))[1] == {"faults": []}
    room = await lk.room.create_room(api.CreateRoomRequest(name="after"))
    assert room.departure_timeout == 5


async def test_config_endpoint_changes_webhook_urls_at_runtime(
    lk: api.LiveKitAPI, emu: Emulator, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    status, config = await control(http, emu, "POST", "/config", {"webhook_urls": []})
    assert status == 200
    assert config["webhook_urls"] == []
    assert "api_secret" not in config
    await lk.room.create_room(api.CreateRoomRequest(name="silent"))
    await control(http, emu, "POST", "/config", {"webhook_urls": [receiver.url]})
    await lk.room.delete_room(api.DeleteRoomRequest(room="silent"))
    await wait_for(lambda: len(receiver.requests) == 1, what="room_finished")
    assert receiver.names() == ["room_finished"]
    assert (await control(http, emu, "POST", "/config", {"tick_interval": -1}))[0] == 400


# ------------------------------------------------------------------------- CLI


@pytest.mark.slow
async def test_cli_prints_listening_line_serves_and_exits_cleanly_on_sigterm(
    http: aiohttp.ClientSession,
) -> None:
    env = {**os.environ, "LIVEKIT_API_KEY": KEY, "LIVEKIT_API_SECRET": SECRET}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "emulator",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=15)).decode().strip()
        match = re.fullmatch(r"LiveKit emulator listening on (http://127\.0\.0\.1:(\d+))", line)
        assert match, line
        async with http.get(f"{match.group(1)}/_emulator/health") as resp:
            assert await resp.json() == {"ok": True}
        client = api.LiveKitAPI(match.group(1), KEY, SECRET)
        try:
            room = await client.room.create_room(api.CreateRoomRequest(name="cli"))
            assert room.name == "cli"
        finally:
            await client.aclose()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
