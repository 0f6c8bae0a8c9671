"""Property: a valid create request re-spelled as protojson (camelCase names, proto3 zero values
left out, integers sometimes as strings) normalises to the metadata proto3 semantics give, which
for a request stating every field is the metadata of the snake_case original."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.rooms.request import RequestInvalid, parse_create_room
from worker.wire import camel

FLAG = st.booleans()
SEED_SWITCHES = (
    "allow_webcams",
    "mute_on_start",
    "allow_screen_share",
    "allow_rtmp",
    "admin_only_webcams",
    "allow_view_other_webcams",
    "allow_view_other_users_list",
)
SUB_FEATURES = {
    "recording_features": (
        "is_allow",
        "is_allow_cloud",
        "is_allow_local",
        "enable_auto_cloud_recording",
    ),
    "chat_features": ("allow_chat", "allow_file_upload"),
    "shared_note_pad_features": ("allowed_shared_note_pad",),
    "whiteboard_features": ("allowed_whiteboard",),
    "external_media_player_features": ("allowed_external_media_player",),
    "waiting_room_features": ("is_active",),
    "display_external_link_features": ("is_allow",),
}
LOCKS = (
    "lock_microphone",
    "lock_webcam",
    "lock_screen_sharing",
    "lock_whiteboard",
    "lock_shared_notepad",
    "lock_chat",
    "lock_chat_send_message",
    "lock_chat_file_share",
    "lock_private_chat",
)


@st.composite
def explicit_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid snake_case create request that states every field the proto has a zero for."""
    features: dict[str, Any] = {name: draw(FLAG) for name in SEED_SWITCHES}
    features["room_duration"] = draw(st.integers(0, 44640))
    for section, switches in SUB_FEATURES.items():
        features[section] = {name: draw(FLAG) for name in switches}
    features["breakout_room_features"] = {
        "is_allow": draw(FLAG),
        "allowed_number_rooms": draw(st.integers(0, 16)),
    }
    if draw(FLAG):  # polls by the seed's switch, or by plugNmeet's newer object
        features["allow_polls"] = draw(FLAG)
    else:
        features["polls_features"] = {"is_allow": draw(FLAG)}
    # Lock settings are proto3 `optional`: a client states some, the rest keep their defaults.
    locks = {name: draw(FLAG) for name in draw(st.sets(st.sampled_from(LOCKS)))}
    metadata: dict[str, Any] = {
        "room_title": draw(st.text(st.characters(codec="utf-8"), min_size=1).filter(str.strip)),
        "welcome_message": draw(st.sampled_from(["", "hello", "Bem-vindo ✓"])),
        "room_features": features,
        "default_lock_settings": locks,
    }
    return {
        "room_id": draw(st.from_regex(r"[A-Za-z0-9_.:-]{1,40}", fullmatch=True)),
        "max_participants": draw(st.integers(0, 1000)),
        "empty_timeout": draw(st.integers(0, 86400)),
        "metadata": metadata,
    }


# proto3 `optional` fields: their zero values are sent (the others' never are).
OPTIONAL = {"welcome_message", "default_lock_settings"}


def as_protojson(value: Any, draw: st.DrawFn, optional: bool = False) -> Any:
    """camelCase keys; zero values dropped except for `optional` fields; integers as text."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            keep_zero = optional or key in OPTIONAL
            if not keep_zero and item in (False, 0, "") and not isinstance(item, dict):
                continue  # proto3 never sends a zero value of a non-optional field
            out[camel(key)] = as_protojson(item, draw, keep_zero)
        return out
    if isinstance(value, int) and not isinstance(value, bool) and draw(FLAG):
        return str(value)  # protojson writes 64-bit integers as strings, and reads either
    return value


@settings(max_examples=300, deadline=None)
@given(explicit_requests(), st.data())
def test_protojson_respelling_normalises_to_the_same_metadata(
    request: dict[str, Any], data: st.DataObject
) -> None:
    expected = parse_create_room(copy.deepcopy(request))

    camel_body = as_protojson(request, data.draw)
    got = parse_create_room(camel_body)

    assert got.metadata == expected.metadata
    assert (got.room_id, got.max_participants, got.empty_timeout, got.room_duration) == (
        expected.room_id,
        expected.max_participants,
        expected.empty_timeout,
        expected.room_duration,
    )


@settings(max_examples=100, deadline=None)
@given(explicit_requests(), st.data())
def test_a_bad_value_is_named_the_same_in_either_spelling(
    request: dict[str, Any], data: st.DataObject
) -> None:
    section = data.draw(st.sampled_from(sorted(SUB_FEATURES)))
    switch = data.draw(st.sampled_from(SUB_FEATURES[section]))
    request["metadata"]["room_features"][section][switch] = "yes"

    messages = []
    for body in (copy.deepcopy(request), as_protojson(request, data.draw)):
        try:
            parse_create_room(body)
        except RequestInvalid as exc:
            messages.append(exc.msg)
    assert messages == [f"metadata.room_features.{section}.{switch}: must be a boolean"] * 2
