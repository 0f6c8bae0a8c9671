"""`worker.protodict.message_dict` gives exactly `MessageToDict`'s dict (values and key order) for
every message type livekit-api ships, filled at random (every field, none, some), and for the
well-known types it leaves to json_format."""

from __future__ import annotations

import importlib
import pkgutil
import random
from typing import Any

import livekit.protocol
import pytest
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from livekit import api

from worker.protodict import message_dict

FD = pb_descriptor.FieldDescriptor


def reference(msg: Message) -> dict[str, Any]:
    return MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def message_types() -> list[type[Message]]:
    """Every message class of livekit-api's protocol modules (nested ones included)."""
    found: dict[str, type[Message]] = {}

    def add(cls: type[Message]) -> None:
        desc = cls.DESCRIPTOR
        if desc.GetOptions().map_entry or desc.full_name in found:
            return
        found[desc.full_name] = cls
        for nested in desc.nested_types:
            nested_cls = getattr(cls, nested.name, None)
            if nested_cls is not None:
                add(nested_cls)

    for info in pkgutil.iter_modules(livekit.protocol.__path__):
        module = importlib.import_module(f"livekit.protocol.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Message) and value is not Message:
                add(value)
    return list(found.values())


SPECIALS = [0.0, -0.0, 1.5, 1e-7, 3.4e38, float("inf"), float("-inf"), float("nan")]


def scalar(field: pb_descriptor.FieldDescriptor, rng: random.Random) -> Any:
    cpp = field.cpp_type
    if cpp == FD.CPPTYPE_ENUM:
        numbers = [v.number for v in field.enum_type.values]
        if not field.enum_type.is_closed and rng.random() < 0.2:
            return max(numbers) + rng.randint(1, 50)  # a number the enum does not name
        return rng.choice(numbers)
    if cpp == FD.CPPTYPE_STRING:
        if field.type == FD.TYPE_BYTES:
            return rng.randbytes(rng.randint(0, 9))
        return rng.choice(["", "a", "é ✓", '{"k": 1}', "x" * 40])
    if cpp == FD.CPPTYPE_BOOL:
        return rng.random() < 0.5
    if cpp in (FD.CPPTYPE_FLOAT, FD.CPPTYPE_DOUBLE):
        return rng.choice([*SPECIALS, rng.uniform(-1e6, 1e6)])
    bits = {FD.CPPTYPE_INT32: 31, FD.CPPTYPE_INT64: 63, FD.CPPTYPE_UINT32: 32}.get(cpp, 64)
    if cpp in (FD.CPPTYPE_INT32, FD.CPPTYPE_INT64):
        return rng.randint(-(2**bits), 2**bits - 1)
    return rng.randint(0, 2**bits - 1)


def well_known(msg: Message, rng: random.Random) -> bool:
    """Fill a well-known type with a value json_format can print; False when `msg` is not one."""
    name = msg.DESCRIPTOR.full_name
    if name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        msg.seconds = rng.randint(0, 4_000_000_000)  # type: ignore[attr-defined]
        msg.nanos = rng.choice([0, 5_000_000, 123_456_789])  # type: ignore[attr-defined]
    elif name == "google.protobuf.Any":
        msg.Pack(api.Room(name=rng.choice(["a", "b"]), max_participants=3))  # type: ignore[attr-defined]
    elif name.startswith("google.protobuf."):
        pass  # an empty one prints as json_format says
    else:
        return False
    return True


def fill(msg: Message, rng: random.Random, share: float, depth: int = 0) -> None:
    """Set about `share` of `msg`'s fields (each oneof gets at most the last one set)."""
    if well_known(msg, rng):
        return
    for field in msg.DESCRIPTOR.fields:
        if rng.random() >= share:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_f = field.message_type.fields_by_name["key"]
            val_f = field.message_type.fields_by_name["value"]
            entries = getattr(msg, field.name)
            for _ in range(rng.randint(1, 3)):
                key = scalar(key_f, rng)
                if val_f.message_type is None:
                    entries[key] = scalar(val_f, rng)
                elif depth < 3:
                    fill(entries[key], rng, share, depth + 1)
        elif field.is_repeated:
            values = getattr(msg, field.name)
            for _ in range(rng.randint(1, 3)):
                if field.message_type is None:
                    values.append(scalar(field, rng))
                elif depth < 3:
                    fill(values.add(), rng, share, depth + 1)
        elif field.message_type is not None:
            if depth < 3:
                sub = getattr(msg, field.name)
                sub.SetInParent()
                fill(sub, rng, share, depth + 1)
        else:
            setattr(msg, field.name, scalar(field, rng))


def outcome(convert: Any, msg: Message) -> str:
    """What `convert` makes of `msg`: its answer's repr, or the refusal it raised."""
    try:
        return repr(convert(msg))
    except Exception as exc:  # the refusal itself is compared
        return f"refused {type(exc).__name__}: {exc}"


TYPES = message_types()


def test_livekit_ships_many_message_types() -> None:
    # The cases below are only as good as the types they run over.
    names = {cls.DESCRIPTOR.full_name for cls in TYPES}
    assert len(names) > 200
    assert {"livekit.ParticipantInfo", "livekit.TrackInfo", "livekit.EgressInfo"} <= names


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_every_livekit_message_type_converts_as_json_format_does(share: float) -> None:
    rng = random.Random(f"protodict-{share}")
    checked = refused = 0
    for cls in TYPES:
        for _ in range(3):
            msg = cls()
            fill(msg, rng, share)
            want, got = outcome(reference, msg), outcome(message_dict, msg)
            # repr compares key order at every level, and tells NaN from anything else; a
            # refusal (a Timestamp out of range, say) must be json_format's own.
            assert got == want, cls.DESCRIPTOR.full_name
            refused += want.startswith("refused")
            checked += 1
    assert checked == 3 * len(TYPES)
    assert refused < checked / 10  # most cases are compared, not refused


def test_a_forwarded_participant_converts_as_json_format_does() -> None:
    participant = api.ParticipantInfo(
        sid="PA_1", identity="alice", state=api.ParticipantInfo.ACTIVE, metadata='{"a":1}',
        joined_at=1_700_000_000, joined_at_ms=1_700_000_000_123, name="Alice",
        permission=api.ParticipantPermission(can_publish=True, can_publish_sources=[1, 2]),
        tracks=[api.TrackInfo(sid="TR_1", type=api.TrackType.VIDEO, width=640,
                              layers=[api.VideoLayer(quality=2, width=640, height=480)])],
        attributes={"role": "admin", "b": "c"},
    )  # fmt: skip
    got = message_dict(participant)
    assert repr(got) == repr(reference(participant))
    assert got["joined_at"] == "1700000000"  # int64 as a string
    assert got["state"] == "ACTIVE"
    assert got["tracks"][0]["layers"][0]["quality"] == api.VideoQuality.Name(2)


def test_well_known_types_are_json_formats_own() -> None:
    stamp = timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=5_000_000)
    assert message_dict(stamp) == reference(stamp) == "2023-11-14T22:13:20.005Z"
    struct = struct_pb2.Struct()
    struct.update({"a": [1, "x", None], "b": {"c": True}})
    assert message_dict(struct) == reference(struct)
