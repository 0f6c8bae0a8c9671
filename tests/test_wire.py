"""plugNmeet's clients on the wire: PHP v2's protojson bodies byte for byte, camelCase bulks,
full-size bulks, errors in either spelling, warnings, unknown routes, createBulk's dry run."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest

from handlers.models import (
    DeliveriesRequest,
    JobStatusRequest,
    JoinTokenRequest,
    PastRoomsRequest,
    RedeliverRequest,
    RoomIdRequest,
)
from roomkeeper.bulkclient import MAX_BODY, Outcome, batches
from roomkeeper.bulkfile import Line
from tests.support.api import livekit_rooms, minimal_request, seed_request
from tests.support.servers import run_receiver
from tests.support.stack import Stack
from worker.rooms.request import parse_create_room
from worker.wire import WireInvalid, read

PHP_V2 = Path(__file__).parent / "fixtures" / "php_v2"
PHP_HOOK_PORT = 8099  # the port the recorded PHP body names in its webhookUrl


def php_body(route: str) -> bytes:
    """A body recorded from plugNmeet-sdk-php v2.2.5, exactly as it was sent."""
    return (PHP_V2 / f"{route}.json").read_bytes()


def test_the_php_fixtures_are_protojson_as_php_writes_it() -> None:
    body = php_body("create")
    assert b"http:\\/\\/127.0.0.1:8099\\/hook" in body  # PHP escapes "/" as "\/"
    assert b'"roomDuration":"30"' in body  # an int64 as a string
    assert b" " not in body.replace(b"Full PHP room", b"")  # compact, as json_encode writes


async def test_every_php_v2_room_call_replayed_byte_for_byte_works(stack: Stack) -> None:
    api = stack.api

    async def call(route: str) -> Any:
        status, answer = await api.raw(f"/auth/room/{route}", php_body(route))
        assert status == 200, (route, status, answer)
        assert answer["status"] is True, (route, answer)
        return answer

    async with run_receiver(port=PHP_HOOK_PORT) as hook:
        created = await call("create")
        info = created["room_info"]
        assert info["room_id"] == "room01"  # PHP v2: $res->getRoomInfo()->getRoomId()
        assert info["name"] == "room01" and info["sid"].startswith("RM_")  # the seed's fields
        assert info["room_title"] == "Full PHP room"
        assert info["webhook_url"] == "http://127.0.0.1:8099/hook"

        room = (await livekit_rooms(stack.emulator.url))["room01"]
        assert room["max_participants"] == 50
        assert room["empty_timeout"] == 600
        metadata = json.loads(room["metadata"])
        features = metadata["room_features"]
        assert features["room_duration"] == 30
        assert features["external_media_player_features"] == {
            "allowed_external_media_player": False
        }
        assert features["chat_features"] == {"allow_chat": True, "allow_file_upload": False}
        assert features["mute_on_start"] is False
        assert features["breakout_room_features"] == {"is_allow": True, "allowed_number_rooms": 6}
        assert features["recording_features"]["is_allow_local"] is False
        assert features["allow_polls"] is True
        locks = metadata["default_lock_settings"]
        assert locks["lock_microphone"] is False and locks["lock_screen_sharing"] is True
        assert locks["lock_whiteboard"] is True  # optional in the proto: absent = the default
        assert metadata["extra_data"] == {"course": "c101"}
        assert metadata["logout_url"] == "https://lms.example.org/bye"

        await hook.wait_for(
            lambda r: any(x.path == "/hook" and x.json["event"] == "room_created" for x in r),
            timeout=15,
        )
        event = next(x.json for x in hook.received if x.json["event"] == "room_created")
        assert event["room"]["room_id"] == "room01" and event["room"]["sid"] == info["sid"]

        assert (await call("isRoomActive"))["is_active"] is True
        assert (await call("getActiveRoomInfo"))["room"]["room_info"]["room_id"] == "room01"
        assert [r["room_info"]["room_id"] for r in (await call("getActiveRoomsInfo"))["rooms"]] == [
            "room01"
        ]
        assert (await call("getJoinToken"))["token"].count(".") == 2
        await call("endRoom")
        past = (await call("fetchPastRooms"))["result"]
        assert past["limit"] == 10
        assert [r["room_id"] for r in past["rooms_list"]] == ["room01"]


def camel_keys(value: Any) -> Any:
    """A request with every key spelled by its lowerCamelCase JSON name, at every level."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            head, *rest = key.split("_")
            out[head + "".join(p[:1].upper() + p[1:] for p in rest)] = camel_keys(item)
        return out
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value


async def test_twenty_camel_case_rooms_in_one_bulk_are_all_accepted_and_created(
    stack: Stack,
) -> None:
    rooms = [camel_keys(seed_request(f"camel-{i:02}")) for i in range(20)]
    assert "roomId" in rooms[0] and "roomFeatures" in rooms[0]["metadata"]

    status, body = await stack.api.post("/auth/room/createBulk", {"rooms": rooms})

    assert status == 202, body
    assert [r["accepted"] for r in body["results"]] == [True] * 20
    assert [r["room_id"] for r in body["results"]] == [f"camel-{i:02}" for i in range(20)]
    assert body["warnings"] == []


async def test_a_thousand_seed_sized_rooms_fit_one_bulk_call(stack: Stack) -> None:
    rooms = [seed_request(f"full-{i:04}") for i in range(1000)]
    size = len(json.dumps({"rooms": rooms}).encode())
    assert size > stack.settings.max_body_bytes  # more than a single route takes

    status, body = await stack.api.post("/auth/room/createBulk", {"rooms": rooms})

    assert status == 202, body
    assert sum(r["accepted"] for r in body["results"]) == 1000


async def test_a_single_room_route_still_refuses_more_than_one_mebibyte(stack: Stack) -> None:
    body = json.dumps(minimal_request("big", welcome_message="x" * 100) | {"pad": "y" * 2**20})
    status, answer = await stack.api.raw("/auth/room/create", body.encode())
    assert status == 413
    assert answer["msg"] == f"request body is larger than {2**20} bytes"


def _bad(room_id: str) -> dict[str, Any]:
    body = seed_request(room_id)
    body["max_participants"] = -1
    body["metadata"]["room_features"]["allow_webcams"] = "yes"
    return body


async def test_bad_input_in_either_spelling_names_the_seed_field_and_rule(stack: Stack) -> None:
    expected = (
        "max_participants: must be an integer >= 0; "
        "metadata.room_features.allow_webcams: must be a boolean"
    )
    for body in (_bad("bad-snake"), camel_keys(_bad("bad-camel"))):
        status, answer = await stack.api.post("/auth/room/create", body)
        assert status == 200
        assert answer == {
            "status": False,
            "msg": expected,
            "status_code": "INVALID_PARAMETERS",
            "errors": expected.split("; "),
        }
    assert await livekit_rooms(stack.emulator.url) == {}


async def test_a_typo_is_answered_with_a_warning_and_kept(stack: Stack) -> None:
    body = minimal_request("typo")
    body["metadata"]["room_features"]["room_duraton"] = 5
    body["empty_timout"] = 60

    answer = await stack.api.create(body)

    assert answer["status"] is True
    assert answer["warnings"] == [  # in the order of the body
        "metadata.room_features.room_duraton: not a known field, kept as is",
        "empty_timout: not a known field, ignored",
    ]
    metadata = json.loads(answer["room_info"]["metadata"])
    assert metadata["room_features"]["room_duraton"] == 5  # kept, as today
    assert metadata["room_features"]["room_duration"] == 0


async def test_an_unknown_auth_route_answers_in_plugnmeets_shape(stack: Stack) -> None:
    status, answer = await stack.api.post("/auth/analytics/fetch", {})
    assert status == 404
    assert answer == {
        "status": False,
        "msg": "/auth/analytics/fetch: roomkeeper does not serve this route "
        "(its /auth routes are listed in /openapi.json)",
        "status_code": "NOT_FOUND",
    }


async def test_an_unknown_path_outside_auth_is_a_json_404(stack: Stack) -> None:
    async with stack.http.get(f"{stack.url}/no/such/page") as resp:
        assert resp.status == 404
        assert resp.content_type == "application/json"
        assert (await resp.json())["msg"] == "/no/such/page: not found"


async def test_a_dry_run_checks_every_room_and_claims_nothing(stack: Stack) -> None:
    rooms: list[Any] = [
        minimal_request("dry-a"),
        minimal_request("dry-a"),
        minimal_request("dry-b", webhook_url="http://10.0.0.1/hook"),
        camel_keys(minimal_request("dry-c")),
    ]

    status, answer = await stack.api.post(
        "/auth/room/createBulk", {"rooms": rooms, "dry_run": True}
    )

    assert status == 200 and answer["dry_run"] is True
    assert [(r["room_id"], r["accepted"], r["msg"]) for r in answer["results"]] == [
        ("dry-a", True, "valid (dry run: nothing was claimed)"),
        ("dry-a", False, "room_id repeated in this call (first used at rooms[0])"),
        ("dry-b", False, "metadata.webhook_url: refused: private address 10.0.0.1"),
        ("dry-c", True, "valid (dry run: nothing was claimed)"),
    ]
    # nothing was claimed: the same rooms are accepted for real afterwards
    status, real = await stack.api.post("/auth/room/createBulk", {"rooms": [rooms[0]]})
    assert status == 202 and real["results"][0]["accepted"] is True


def test_the_same_room_in_either_spelling_gives_the_same_metadata() -> None:
    snake = seed_request("same")
    camel = camel_keys(copy.deepcopy(snake))
    assert parse_create_room(camel).metadata == parse_create_room(snake).metadata


def _outcome(room_id: str, title_length: int) -> Outcome:
    request = minimal_request(room_id) | {"metadata": {"room_title": "t" * title_length}}
    return Outcome(Line(1, room_id, request))


def test_create_rooms_splits_its_calls_by_bytes_as_well_as_by_count() -> None:
    small = [_outcome(f"s{i}", 10) for i in range(250)]
    large = [_outcome(f"l{i}", 4000) for i in range(600)]  # about 4 KB a room

    by_count = batches(small, 100, MAX_BODY)
    by_bytes = batches(large, 1000, MAX_BODY)

    assert [len(b) for b in by_count] == [100, 100, 50]
    assert len(by_bytes) == 3  # 2.4 MB in calls of at most 1 MB
    for batch in by_count + by_bytes:
        body = json.dumps({"rooms": [o.line.request for o in batch]}).encode()
        assert len(body) <= MAX_BODY
    assert [o for b in by_bytes for o in b] == large  # file order kept, nothing lost
    (alone,) = batches([_outcome("huge", 2 * MAX_BODY)], 1000, MAX_BODY)
    assert len(alone) == 1  # too large to share a call: it goes alone


def test_every_route_reads_either_spelling_and_protojson_scalars() -> None:
    past = read(PastRoomsRequest, {"roomIds": ["r1"], "from": "5", "limit": 0, "orderBy": 1})
    assert (past.value.room_ids, past.value.from_, past.value.limit) == (["r1"], 5, 20)
    assert past.value.order_by == "ASC"  # an enum by number; "" or absent is DESC
    assert read(PastRoomsRequest, {"order_by": "asc"}).value.order_by == "ASC"
    assert read(PastRoomsRequest, {"from_": 3}).value.from_ == 3  # the Python SDK's spelling

    token = read(
        JoinTokenRequest, {"roomId": "r1", "userInfo": {"name": "A", "userId": "u1"}}
    ).value
    assert (token.room_id, token.user_info.user_id, token.user_info.is_admin) == ("r1", "u1", False)

    since = read(RedeliverRequest, {"roomId": "r1", "since": "1700000000"}).value
    assert (since.room_id, since.since) == ("r1", 1_700_000_000.0)
    assert read(DeliveriesRequest, {"roomId": "r1", "limit": "10"}).value.limit == 10


def test_every_route_names_bad_fields_by_their_snake_case_names() -> None:
    cases: list[tuple[type[Any], dict[str, Any], str]] = [
        (RoomIdRequest, {"roomId": "a b"}, "room_id: must be 1-256 characters"),
        (PastRoomsRequest, {"orderBy": "sideways"}, "order_by: must be one of ASC, DESC"),
        (PastRoomsRequest, {"roomIds": "r1"}, "room_ids: must be a list of room ids"),
        (JoinTokenRequest, {"roomId": "r1", "userInfo": {"userId": "u"}}, "user_info.name: is required"),
        (JobStatusRequest, {"jobIds": ["ok", 7]}, "job_ids[1]: must be a string of 1 to 256"),
    ]  # fmt: skip
    for model, body, message in cases:
        with pytest.raises(WireInvalid) as info:
            read(model, body)
        assert info.value.msg.startswith(message), (model, body, info.value.msg)


async def test_livekit_events_are_still_held_to_one_mebibyte(stack: Stack) -> None:
    body = b'{"event":"room_started","pad":"' + b"x" * 2**20 + b'"}'
    async with stack.http.post(
        f"{stack.url}/webhook", data=io.BytesIO(body), headers={"Authorization": "x"}
    ) as resp:
        assert resp.status == 413
        assert await resp.text() == f"body is larger than {2**20} bytes\n"


async def test_a_bulk_names_each_rooms_unknown_keys_by_its_position(stack: Stack) -> None:
    typo = minimal_request("bulk-typo")
    typo["metadata"]["room_features"]["room_duraton"] = 5
    rooms = [minimal_request("bulk-fine"), camel_keys(typo)]

    status, answer = await stack.api.post("/auth/room/createBulk", {"rooms": rooms})

    assert status == 202 and [r["accepted"] for r in answer["results"]] == [True, True]
    assert answer["warnings"] == [
        "rooms.1.metadata.room_features.roomDuraton: not a known field, kept as is"
    ]
