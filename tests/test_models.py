"""The create-room rules (README, The API: `/auth/room/create`): what parses, how it is normalised, what is refused."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest
from plugnmeet_sdk.schemas.data import (
    BreakoutRoomFeatures,
    ChatFeatures,
    DefaultLockSettings,
    DisplayExternalLinkFeatures,
    ExternalMediaPlayerFeatures,
    RecordingFeatures,
    RoomFeatures,
    RoomMetadata,
    SharedNotePadFeatures,
    WaitingRoomFeatures,
    WhiteboardFeatures,
)
from plugnmeet_sdk.schemas.requests import CreateRoomRequest

from handlers.models import PastRoomsRequest
from worker.rooms.request import (
    CreateLimits,
    CreateRoom,
    RequestInvalid,
    parse_create_room,
)
from worker.webhooks.netguard import parse_cidrs
from worker.wire import WireInvalid, read

# The example request from the user's seed document (000_c6989e4d3af78a2e.txt), verbatim.
SEED_EXAMPLE: dict[str, Any] = {
    "room_id": "room01",
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

# What `{"room_title": "Test room", "room_features": {}}` becomes: every default create fills in.
DEFAULT_METADATA: dict[str, Any] = {
    "room_title": "Test room",
    "room_features": {
        "allow_webcams": True,
        "mute_on_start": False,
        "allow_screen_share": True,
        "allow_rtmp": False,
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
        "breakout_room_features": {"is_allow": True, "allowed_number_rooms": 6},
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
}

DEFAULT_TRUE = [
    "room_features.allow_webcams",
    "room_features.allow_screen_share",
    "room_features.allow_view_other_webcams",
    "room_features.allow_view_other_users_list",
    "room_features.allow_polls",
    "room_features.recording_features.is_allow",
    "room_features.recording_features.is_allow_cloud",
    "room_features.recording_features.is_allow_local",
    "room_features.chat_features.allow_chat",
    "room_features.chat_features.allow_file_upload",
    "room_features.shared_note_pad_features.allowed_shared_note_pad",
    "room_features.whiteboard_features.allowed_whiteboard",
    "room_features.external_media_player_features.allowed_external_media_player",
    "room_features.breakout_room_features.is_allow",
    "room_features.display_external_link_features.is_allow",
    "default_lock_settings.lock_screen_sharing",
    "default_lock_settings.lock_whiteboard",
    "default_lock_settings.lock_shared_notepad",
]
DEFAULT_FALSE = [
    "room_features.mute_on_start",
    "room_features.admin_only_webcams",
    "room_features.allow_rtmp",
    "room_features.recording_features.enable_auto_cloud_recording",
    "room_features.waiting_room_features.is_active",
    "default_lock_settings.lock_microphone",
    "default_lock_settings.lock_webcam",
    "default_lock_settings.lock_chat",
    "default_lock_settings.lock_chat_send_message",
    "default_lock_settings.lock_chat_file_share",
    "default_lock_settings.lock_private_chat",
]

ROOM_ID_RULE = "room_id: must be 1-256 characters of A-Z a-z 0-9 _ . : -"
URL_RULE = "metadata.webhook_url: must be an absolute http(s) URL"
DELETE = object()


def minimal() -> dict[str, Any]:
    return {"room_id": "room01", "metadata": {"room_title": "Test room", "room_features": {}}}


def with_(path: str, value: Any, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of `body` (default: the minimal request) with `path` set, or removed by DELETE."""
    body = copy.deepcopy(minimal() if body is None else body)
    *parents, last = path.split(".")
    node = body
    for key in parents:
        node = node.setdefault(key, {})
    if value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return body


def get(tree: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        tree = tree[key]
    return tree


def refusal(body: object, limits: CreateLimits | None = None) -> str:
    with pytest.raises(RequestInvalid) as info:
        parse_create_room(body, limits or CreateLimits())
    return info.value.msg


def nested(levels: int) -> dict[str, Any]:
    """`levels` objects inside each other: nested(1) == {}, nested(2) == {"a": {}}."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


# --- what parses ---------------------------------------------------------------------------------


def test_seed_example_parses_and_its_metadata_is_stored_as_sent() -> None:
    room = parse_create_room(copy.deepcopy(SEED_EXAMPLE))

    assert room.metadata == SEED_EXAMPLE["metadata"]  # the example already spells every default
    assert (room.room_id, room.max_participants, room.room_duration) == ("room01", 0, 0)
    assert room.webhook_url is None


def test_metadata_json_is_the_compact_utf8_dump_of_the_metadata() -> None:
    room = parse_create_room(with_("metadata.room_title", "Sala de reunião ✓"))

    assert room.metadata_json == json.dumps(
        room.metadata, separators=(",", ":"), ensure_ascii=False
    )
    assert '"room_title":"Sala de reunião ✓"' in room.metadata_json
    assert json.loads(room.metadata_json) == room.metadata


def test_minimal_request_gets_every_default_filled_in() -> None:
    assert parse_create_room(minimal()).metadata == DEFAULT_METADATA


def test_python_sdk_request_with_nulls_everywhere_optional_parses() -> None:
    request = CreateRoomRequest(
        room_id="sdk-room",
        metadata=RoomMetadata(
            room_title="SDK room",
            room_features=RoomFeatures(
                allow_webcams=True,
                mute_on_start=False,
                allow_screen_share=True,
                allow_rtmp=False,
                admin_only_webcams=False,
                allow_view_other_webcams=True,
                allow_view_other_users_list=True,
                recording_features=RecordingFeatures(True, True, True, False),
                chat_features=ChatFeatures(True, True),
                shared_note_pad_features=SharedNotePadFeatures(True),
                whiteboard_features=WhiteboardFeatures(True),
                external_media_player_features=ExternalMediaPlayerFeatures(True),
                waiting_room_features=WaitingRoomFeatures(False),
                breakout_room_features=BreakoutRoomFeatures(True, 6),
                display_external_link_features=DisplayExternalLinkFeatures(True),
            ),
            default_lock_settings=DefaultLockSettings(),  # every lock None
        ),
    )
    body = json.loads(json.dumps(dataclasses.asdict(request)))  # what the SDK puts on the wire
    assert body["metadata"]["room_features"]["ingress_features"] is None  # nulls really are sent

    room = parse_create_room(body)

    assert room.metadata == DEFAULT_METADATA | {"room_title": "SDK room"}
    assert "null" not in room.metadata_json
    assert (room.max_participants, room.empty_timeout) == (0, 1800)


def test_null_means_absent_at_every_level() -> None:
    body = {
        "room_id": "room01",
        "max_participants": None,
        "empty_timeout": None,
        "metadata": {
            "room_title": "Test room",
            "welcome_message": None,
            "webhook_url": None,
            "logout_url": None,
            "extra_data": None,
            "default_lock_settings": None,
            "room_features": {
                "allow_webcams": None,
                "room_duration": None,
                "chat_features": None,
                "recording_features": {"is_allow": None},
                "breakout_room_features": {"allowed_number_rooms": None},
                "ingress_features": None,
            },
        },
    }

    room = parse_create_room(body)

    assert room.metadata == DEFAULT_METADATA
    assert (room.max_participants, room.empty_timeout) == (0, 1800)


@pytest.mark.parametrize("path", DEFAULT_TRUE)
def test_explicit_false_is_kept_where_the_default_is_true(path: str) -> None:
    room = parse_create_room(with_(f"metadata.{path}", False))
    assert get(room.metadata, path) is False


@pytest.mark.parametrize("path", DEFAULT_FALSE)
def test_explicit_true_is_kept_where_the_default_is_false(path: str) -> None:
    room = parse_create_room(with_(f"metadata.{path}", True))
    assert get(room.metadata, path) is True


@pytest.mark.parametrize(
    ("section", "newer", "seed"),
    [
        ("chat_features", "is_allow", "allow_chat"),
        ("chat_features", "is_allow_file_upload", "allow_file_upload"),
        ("shared_note_pad_features", "is_allow", "allowed_shared_note_pad"),
        ("whiteboard_features", "is_allow", "allowed_whiteboard"),
        ("external_media_player_features", "is_allow", "allowed_external_media_player"),
        ("breakout_room_features", "is_active", "is_allow"),
        ("display_external_link_features", "is_active", "is_allow"),
    ],
)
def test_newer_switch_name_is_stored_under_the_seed_name(
    section: str, newer: str, seed: str
) -> None:
    room = parse_create_room(with_(f"metadata.room_features.{section}.{newer}", False))

    features = room.metadata["room_features"][section]
    assert features[seed] is False
    assert newer not in features


def test_polls_features_is_allow_is_stored_as_allow_polls_keeping_other_poll_keys() -> None:
    body = with_("metadata.room_features.polls_features", {"is_allow": False, "max_options": 5})

    features = parse_create_room(body).metadata["room_features"]

    assert features["allow_polls"] is False
    assert features["polls_features"] == {"max_options": 5}


@pytest.mark.parametrize(
    ("section", "seed", "newer"),
    [
        ("chat_features", "allow_chat", "is_allow"),
        ("whiteboard_features", "allowed_whiteboard", "is_allow"),
        ("breakout_room_features", "is_allow", "is_active"),
    ],
)
def test_seed_name_wins_when_both_names_are_sent(section: str, seed: str, newer: str) -> None:
    body = with_(f"metadata.room_features.{section}", {seed: True, newer: False})

    features = parse_create_room(body).metadata["room_features"][section]

    assert features[seed] is True
    assert newer not in features  # no contradicting leftover


def test_allow_polls_wins_over_polls_features_is_allow() -> None:
    body = with_("metadata.room_features.allow_polls", True)
    body = with_("metadata.room_features.polls_features", {"is_allow": False}, body)

    features = parse_create_room(body).metadata["room_features"]

    assert features["allow_polls"] is True
    assert "polls_features" not in features


def test_unknown_metadata_keys_are_kept_at_every_level_without_their_nulls() -> None:
    body = minimal()
    body["metadata"] |= {"copyright_conf": {"display": True, "text": None}, "extra_data": "{}"}
    body["metadata"]["room_features"] = {
        "allow_virtual_bg": False,
        "ingress_features": {"is_allow": True},
        "end_to_end_encryption_features": {"is_enabled": False, "included_whiteboard": None},
        "whiteboard_features": {"allowed_whiteboard": True, "preload_file": "https://x.test/a.pdf"},
        "chat_features": {"max_file_size": 50, "tags": [1, None, "a"]},
    }
    body["metadata"]["default_lock_settings"] = {"lock_raise_hand": True}

    metadata = parse_create_room(body).metadata

    assert metadata["copyright_conf"] == {"display": True}
    assert metadata["extra_data"] == "{}"
    features = metadata["room_features"]
    assert features["allow_virtual_bg"] is False
    assert features["ingress_features"] == {"is_allow": True}
    assert features["end_to_end_encryption_features"] == {"is_enabled": False}
    assert features["whiteboard_features"]["preload_file"] == "https://x.test/a.pdf"
    assert features["chat_features"]["tags"] == [1, None, "a"]  # array items are values, kept
    assert metadata["default_lock_settings"]["lock_raise_hand"] is True


def test_unknown_top_level_keys_are_ignored() -> None:
    body = minimal() | {"is_breakout_room": True, "extra": {"deep": [1, 2]}}
    assert parse_create_room(body) == parse_create_room(minimal())


def test_recording_off_clears_cloud_local_and_auto_recording() -> None:
    body = with_(
        "metadata.room_features.recording_features",
        {
            "is_allow": False,
            "is_allow_cloud": True,
            "is_allow_local": True,
            "enable_auto_cloud_recording": True,
        },
    )

    recording = parse_create_room(body).metadata["room_features"]["recording_features"]

    assert recording == {
        "is_allow": False,
        "is_allow_cloud": False,
        "is_allow_local": False,
        "enable_auto_cloud_recording": False,
    }


@pytest.mark.parametrize("chat_off", [{"allow_chat": False}, {"is_allow": False}])
def test_chat_off_clears_file_upload(chat_off: dict[str, bool]) -> None:
    body = with_("metadata.room_features.chat_features", chat_off | {"allow_file_upload": True})

    chat = parse_create_room(body).metadata["room_features"]["chat_features"]

    assert chat == {"allow_chat": False, "allow_file_upload": False}


@pytest.mark.parametrize(
    ("requested", "cap", "expected"),
    [(0, 0, 0), (90, 0, 90), (0, 60, 60), (30, 60, 30), (60, 60, 60), (120, 60, 60)],
)
def test_room_duration_is_capped_by_the_configured_maximum(
    requested: int, cap: int, expected: int
) -> None:
    body = with_("metadata.room_features.room_duration", requested)

    room = parse_create_room(body, CreateLimits(max_room_duration=cap))

    assert room.room_duration == expected
    assert room.metadata["room_features"]["room_duration"] == expected


def test_absent_room_duration_is_capped_too() -> None:
    room = parse_create_room(minimal(), CreateLimits(max_room_duration=45))
    assert room.room_duration == room.metadata["room_features"]["room_duration"] == 45


@pytest.mark.parametrize(("sent", "expected"), [(DELETE, 900), (0, 900), (60, 60)])
def test_empty_timeout_zero_or_absent_means_the_configured_default(
    sent: Any, expected: int
) -> None:
    room = parse_create_room(with_("empty_timeout", sent), CreateLimits(default_empty_timeout=900))
    assert room.empty_timeout == expected


def test_max_participants_is_passed_through() -> None:
    assert parse_create_room(with_("max_participants", 25)).max_participants == 25


def test_breakouts_off_tolerate_zero_rooms() -> None:
    body = with_(
        "metadata.room_features.breakout_room_features",
        {"is_allow": False, "allowed_number_rooms": 0},
    )
    breakout = parse_create_room(body).metadata["room_features"]["breakout_room_features"]
    assert breakout == {"is_allow": False, "allowed_number_rooms": 0}


@pytest.mark.parametrize("rooms", [1, 16])
def test_breakout_room_count_bounds_are_inclusive(rooms: int) -> None:
    body = with_("metadata.room_features.breakout_room_features.allowed_number_rooms", rooms)
    breakout = parse_create_room(body).metadata["room_features"]["breakout_room_features"]
    assert breakout["allowed_number_rooms"] == rooms


@pytest.mark.parametrize("field", ["webhook_url", "logout_url"])
def test_empty_url_means_absent(field: str) -> None:
    room = parse_create_room(with_(f"metadata.{field}", ""))
    assert field not in room.metadata
    assert room.webhook_url is None


def test_webhook_url_is_returned_and_stored() -> None:
    room = parse_create_room(with_("metadata.webhook_url", "https://hooks.example.com/pnm?x=1"))
    assert room.webhook_url == room.metadata["webhook_url"] == "https://hooks.example.com/pnm?x=1"


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.com/x", "http://93.184.216.34:8080/hook", "HTTPS://Example.COM"],
)
def test_public_or_named_webhook_hosts_are_accepted(url: str) -> None:
    # Host names are not resolved here: the delivery engine guards each connection.
    assert parse_create_room(with_("metadata.webhook_url", url)).webhook_url == url


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9000/hook", "http://[::ffff:127.0.0.1]/hook", "http://127.8.9.10/"]
)
def test_allowed_cidrs_open_a_range_for_webhooks(url: str) -> None:
    limits = CreateLimits(allowed_cidrs=parse_cidrs(["127.0.0.0/8"]))
    assert parse_create_room(with_("metadata.webhook_url", url), limits).webhook_url == url


def test_logout_url_may_point_anywhere_because_only_browsers_follow_it() -> None:
    room = parse_create_room(with_("metadata.logout_url", "http://127.0.0.1/bye"))
    assert room.metadata["logout_url"] == "http://127.0.0.1/bye"


@pytest.mark.parametrize("title", ["a" * 4096, "é" * 4096])
def test_strings_up_to_the_limit_are_accepted(title: str) -> None:
    assert parse_create_room(with_("metadata.room_title", title)).metadata["room_title"] == title


def test_nesting_up_to_the_limit_is_accepted() -> None:
    # metadata is level 1, so 15 more levels make 16.
    room = parse_create_room(with_("metadata.deep", nested(15)))
    assert room.metadata["deep"] == nested(15)


def test_metadata_exactly_at_the_byte_limit_is_accepted() -> None:
    size = len(parse_create_room(minimal()).metadata_json.encode())
    assert parse_create_room(minimal(), CreateLimits(max_metadata_bytes=size))


# --- what is refused, and the exact message ------------------------------------------------------


@pytest.mark.parametrize("body", [[], ["room01"], "room01", None, 5, True])
def test_a_body_that_is_not_an_object_is_refused(body: object) -> None:
    assert refusal(body) == "request body must be a JSON object"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        # room_id
        ("room_id", DELETE, "room_id: is required"),
        ("room_id", None, "room_id: is required"),
        ("room_id", "", ROOM_ID_RULE),
        ("room_id", "a" * 257, ROOM_ID_RULE),
        ("room_id", "room 01", ROOM_ID_RULE),
        ("room_id", "room/01", ROOM_ID_RULE),
        ("room_id", "röom", ROOM_ID_RULE),
        ("room_id", "room01\n", ROOM_ID_RULE),
        ("room_id", 5, "room_id: must be a string"),
        ("room_id", ["room01"], "room_id: must be a string"),
        # the numbers
        ("max_participants", -1, "max_participants: must be an integer >= 0"),
        ("max_participants", 5.5, "max_participants: must be an integer >= 0"),
        ("max_participants", 5.0, "max_participants: must be an integer >= 0"),
        ("max_participants", "five", "max_participants: must be an integer >= 0"),
        ("max_participants", True, "max_participants: must be an integer >= 0"),
        ("max_participants", 100_001, "max_participants: must be at most 100000"),
        ("empty_timeout", -5, "empty_timeout: must be an integer >= 0"),
        ("empty_timeout", 1.5, "empty_timeout: must be an integer >= 0"),
        ("empty_timeout", "30s", "empty_timeout: must be an integer >= 0"),
        ("empty_timeout", False, "empty_timeout: must be an integer >= 0"),
        (
            "empty_timeout",
            31 * 86400 + 1,
            "empty_timeout: must be at most 2678400 seconds (31 days)",
        ),
        (
            "metadata.room_features.room_duration",
            -1,
            "metadata.room_features.room_duration: must be an integer >= 0",
        ),
        (
            "metadata.room_features.room_duration",
            "an hour",
            "metadata.room_features.room_duration: must be an integer >= 0",
        ),
        (
            "metadata.room_features.room_duration",
            31 * 1440 + 1,
            "metadata.room_features.room_duration: must be at most 44640 minutes (31 days)",
        ),
        # metadata and its required parts
        ("metadata", DELETE, "metadata: is required"),
        ("metadata", None, "metadata: is required"),
        ("metadata", [], "metadata: must be an object"),
        ("metadata", '{"room_title": "Test room"}', "metadata: must be an object"),
        ("metadata.room_title", DELETE, "metadata.room_title: is required"),
        ("metadata.room_title", "", "metadata.room_title: must not be empty"),
        ("metadata.room_title", "  \t\n", "metadata.room_title: must not be empty"),
        ("metadata.room_title", 7, "metadata.room_title: must be a string"),
        ("metadata.welcome_message", False, "metadata.welcome_message: must be a string"),
        ("metadata.room_features", DELETE, "metadata.room_features: is required"),
        ("metadata.room_features", "all", "metadata.room_features: must be an object"),
        (
            "metadata.room_features.chat_features",
            True,
            "metadata.room_features.chat_features: must be an object",
        ),
        ("metadata.default_lock_settings", [], "metadata.default_lock_settings: must be an object"),
        # switches
        (
            "metadata.room_features.allow_webcams",
            "true",
            "metadata.room_features.allow_webcams: must be a boolean",
        ),
        (
            "metadata.room_features.recording_features.is_allow",
            1,
            "metadata.room_features.recording_features.is_allow: must be a boolean",
        ),
        (
            "metadata.room_features.chat_features.is_allow",
            "yes",  # named by the seed's name of the switch
            "metadata.room_features.chat_features.allow_chat: must be a boolean",
        ),
        (
            "metadata.room_features.polls_features",
            {"is_allow": "no"},
            "metadata.room_features.polls_features.is_allow: must be a boolean",
        ),
        (
            "metadata.default_lock_settings.lock_chat",
            "false",
            "metadata.default_lock_settings.lock_chat: must be a boolean",
        ),
        # breakout rooms
        (
            "metadata.room_features.breakout_room_features.allowed_number_rooms",
            17,
            "metadata.room_features.breakout_room_features.allowed_number_rooms: "
            "must be between 1 and 16",
        ),
        (
            "metadata.room_features.breakout_room_features.allowed_number_rooms",
            "six",
            "metadata.room_features.breakout_room_features.allowed_number_rooms: "
            "must be an integer",
        ),
        (
            "metadata.room_features.breakout_room_features.allowed_number_rooms",
            True,
            "metadata.room_features.breakout_room_features.allowed_number_rooms: "
            "must be an integer",
        ),
        # URLs
        ("metadata.webhook_url", "ftp://example.com/hook", URL_RULE),
        ("metadata.webhook_url", "not a url", URL_RULE),
        ("metadata.webhook_url", "http://", URL_RULE),
        ("metadata.webhook_url", "http:///hook", URL_RULE),
        ("metadata.webhook_url", "//example.com/hook", URL_RULE),
        ("metadata.webhook_url", "/relative/hook", URL_RULE),
        ("metadata.webhook_url", "http://exa mple.com/", URL_RULE),
        ("metadata.webhook_url", "http://example.com/\nX-Injected: 1", URL_RULE),
        ("metadata.webhook_url", "http://example.com:99999/", URL_RULE),
        ("metadata.webhook_url", "http://[::1/", URL_RULE),
        ("metadata.webhook_url", 5, "metadata.webhook_url: must be a string"),
        (
            "metadata.logout_url",
            "javascript:alert(1)",
            "metadata.logout_url: must be an absolute http(s) URL",
        ),
    ],
)
def test_bad_input_is_refused_with_its_path_and_rule(path: str, value: Any, message: str) -> None:
    assert refusal(with_(path, value)) == message


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/hook", "loopback address 127.0.0.1"),
        ("http://[::1]:8080/hook", "loopback address ::1"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback address 127.0.0.1"),
        ("http://10.0.0.1/hook", "private address 10.0.0.1"),
        ("http://169.254.169.254/latest/meta-data", "link-local address 169.254.169.254"),
        ("http://0.0.0.0/", "unspecified address 0.0.0.0"),
        ("https://2130706433/hook", "loopback address 127.0.0.1"),  # 127.0.0.1 as one number
        ("https://0x7f.1/hook", "loopback address 127.0.0.1"),
        ("http://127.1/hook", "loopback address 127.0.0.1"),
        ("http://hooks.example.com@127.0.0.1/hook", "loopback address 127.0.0.1"),
    ],
)
def test_webhook_to_a_literal_internal_address_is_refused(url: str, reason: str) -> None:
    assert refusal(with_("metadata.webhook_url", url)) == f"metadata.webhook_url: refused: {reason}"


def test_allowed_cidrs_open_only_their_own_range() -> None:
    limits = CreateLimits(allowed_cidrs=parse_cidrs(["127.0.0.0/8"]))
    body = with_("metadata.webhook_url", "http://10.0.0.1/hook")
    assert refusal(body, limits) == "metadata.webhook_url: refused: private address 10.0.0.1"


def test_metadata_larger_than_livekit_allows_is_refused() -> None:
    body = with_("metadata.extra_data", {f"k{i}": "x" * 4000 for i in range(140)})  # ~560 KB
    assert refusal(body) == "metadata: must be at most 524288 bytes as JSON"


def test_metadata_size_is_measured_in_utf8_bytes_not_characters() -> None:
    size = len(parse_create_room(minimal()).metadata_json.encode())
    body = with_("metadata.room_title", "Test roomé")  # one more character, two more bytes
    limits = CreateLimits(max_metadata_bytes=size + 1)
    assert refusal(body, limits) == f"metadata: must be at most {size + 1} bytes as JSON"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("metadata.room_title", "metadata.room_title: must be at most 4096 characters"),
        ("metadata.welcome_message", "metadata.welcome_message: must be at most 4096 characters"),
        ("metadata.extra.note", "metadata.extra.note: must be at most 4096 characters"),
    ],
)
def test_a_string_longer_than_the_limit_is_refused(path: str, message: str) -> None:
    assert refusal(with_(path, "x" * 4097)) == message


def test_a_long_url_is_refused_by_the_string_limit() -> None:
    url = "https://example.com/" + "a" * 4096
    body = with_("metadata.webhook_url", url)
    assert refusal(body) == "metadata.webhook_url: must be at most 4096 characters"


def test_a_string_inside_an_array_is_named_by_its_index() -> None:
    body = with_("metadata.extra.tags", ["ok", "x" * 4097])
    assert refusal(body) == "metadata.extra.tags.1: must be at most 4096 characters"


def test_a_key_longer_than_the_limit_is_refused() -> None:
    body = with_("metadata.extra", {"k" * 4097: 1})
    assert refusal(body) == "metadata.extra: keys must be strings of at most 4096 characters"


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    body = with_("metadata.deep", nested(16))  # 17 levels with metadata itself
    expected = "metadata.deep" + ".a" * 15 + ": must not be nested more than 16 levels deep"
    assert refusal(body) == expected


def test_arrays_count_as_nesting_levels() -> None:
    deep: Any = []
    for _ in range(15):
        deep = [deep]
    expected = "metadata.deep" + ".0" * 15 + ": must not be nested more than 16 levels deep"
    assert refusal(with_("metadata.deep", deep)) == expected


def test_hostile_nesting_is_refused_without_exhausting_the_stack() -> None:
    message = refusal(with_("metadata.deep", nested(100_000)))
    assert message.endswith(": must not be nested more than 16 levels deep")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "metadata.extra: must be a finite number"),
        (float("inf"), "metadata.extra: must be a finite number"),
        ("\ud800", "metadata.extra: must be valid Unicode text"),  # json.loads lets this through
    ],
)
def test_values_livekit_cannot_store_are_refused(value: Any, message: str) -> None:
    assert refusal(with_("metadata.extra", value)) == message


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"room_id": "bad id", "max_participants": -1, "metadata": None},
            f"{ROOM_ID_RULE}; max_participants: must be an integer >= 0; metadata: is required",
        ),
        (
            {"max_participants": -1, "empty_timeout": -1, "metadata": None},
            "max_participants: must be an integer >= 0; empty_timeout: must be an integer >= 0; "
            "metadata: is required",
        ),
        (
            {"metadata": {"room_features": "x", "room_title": ""}},
            "metadata.room_title: must not be empty; metadata.room_features: must be an object",
        ),
    ],
)
def test_every_error_is_reported_at_once_in_field_order(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(RequestInvalid) as info:
        parse_create_room(minimal() | changes)
    assert info.value.msg == message
    assert info.value.errors == message.split("; ")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({1, 2}, "metadata.extra: must be a JSON value"),
        ({1: "a"}, "metadata.extra: keys must be strings of at most 4096 characters"),
    ],
)
def test_python_callers_passing_non_json_values_get_a_message_not_a_crash(
    extra: Any, message: str
) -> None:
    assert refusal(with_("metadata.extra", extra)) == message


def test_request_invalid_is_a_value_error_whose_str_is_the_message() -> None:
    with pytest.raises(ValueError, match=r"^metadata: is required$") as info:
        parse_create_room({"room_id": "room01"})
    assert isinstance(info.value, RequestInvalid)
    assert str(info.value) == info.value.msg == "metadata: is required"


# --- the room_id rule, for the other routes ------------------------------------------------------


def test_a_room_id_list_keeps_valid_ids() -> None:
    assert read(PastRoomsRequest, {"room_ids": ["Room_01.a:b-c"]}).value.room_ids == [
        "Room_01.a:b-c"
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "room_ids.0: is required"),
        ("", "room_ids.0: must be 1-256 characters of A-Z a-z 0-9 _ . : -"),
        ("x" * 257, "room_ids.0: must be 1-256 characters of A-Z a-z 0-9 _ . : -"),
        (12, "room_ids.0: must be a string"),
    ],
)
def test_the_room_id_rule_names_the_item_it_was_given(value: object, message: str) -> None:
    with pytest.raises(WireInvalid) as info:
        read(PastRoomsRequest, {"room_ids": [value]})
    assert info.value.msg == message


def test_create_room_is_immutable() -> None:
    room = parse_create_room(minimal())
    assert isinstance(room, CreateRoom)
    with pytest.raises(dataclasses.FrozenInstanceError):
        room.room_id = "other"  # type: ignore[misc]
