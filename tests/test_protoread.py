"""`worker.protoread.parse_json` reads exactly the message `json_format.Parse(...,
ignore_unknown_fields=True)` reads, and refuses exactly what it refuses (with its error): over
every livekit-api message type filled at random and written both ways (camelCase and proto
names), and over hand-made bodies at the edges (repeated keys, nulls, numbers as text, unknown
names, values out of range)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from google.protobuf.json_format import MessageToJson, Parse
from google.protobuf.message import Message
from livekit import api

from tests.test_protodict import TYPES, fill
from worker.protoread import parse_json


def outcome(read: Any, text: str, cls: type[Message]) -> str:
    """What `read` makes of `text`: the message's exact bytes, or the refusal it raised."""
    try:
        msg = read(text, cls)
    except Exception as exc:  # the refusal itself is compared
        return f"refused {type(exc).__name__}: {exc}"
    return f"read {cls.DESCRIPTOR.full_name} {msg.SerializeToString(deterministic=True)!r}"


def parse(text: str, cls: type[Message]) -> Message:
    return Parse(text, cls(), ignore_unknown_fields=True)


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("proto_names", [False, True])
def test_every_livekit_message_type_reads_as_parse_does(share: float, proto_names: bool) -> None:
    rng = random.Random(f"protoread-{share}-{proto_names}")
    read = 0
    for cls in TYPES:
        for _ in range(2):
            msg = cls()
            fill(msg, rng, share)
            text = MessageToJson(msg, preserving_proto_field_name=proto_names, indent=None)
            want = outcome(parse, text, cls)
            assert outcome(parse_json, text, cls) == want, (cls.DESCRIPTOR.full_name, text)
            read += want.startswith("read")
    assert read > len(TYPES)  # most texts are read, not refused


def event_json(**overrides: Any) -> str:
    body: dict[str, Any] = {
        "event": "participant_joined",
        "id": "EV_1",
        "createdAt": "1700000000",
        "room": {"sid": "RM_1", "name": "r"},
        "participant": {
            "sid": "PA_1",
            "identity": "alice",
            "state": "ACTIVE",
            "joinedAt": "1700000000",
            "permission": {"canPublish": True, "canPublishSources": ["CAMERA", 2]},
            "attributes": {"role": "admin"},
            "tracks": [{"sid": "TR_1", "type": "VIDEO", "width": 640}],
        },
    }
    body.update(overrides)
    return json.dumps(body)


EDGES = [
    event_json(),
    event_json(unknownField={"a": [1, {"b": None}]}),
    event_json(createdAt=1700000000),
    event_json(createdAt=1.0e9),
    event_json(createdAt=1.5),
    event_json(createdAt="+17"),
    event_json(createdAt="1_000"),
    event_json(createdAt="17 "),
    event_json(createdAt="1e3"),
    event_json(createdAt=True),
    event_json(createdAt=2**70),
    event_json(createdAt=None),
    event_json(event=None),
    event_json(event=5),
    event_json(room={"sid": "RM_1", "maxParticipants": -1}),
    event_json(room={"sid": "RM_1", "maxParticipants": 2**33}),
    event_json(room={"sid": "RM_1", "maxParticipants": "7"}),
    event_json(room=[]),
    event_json(room="x"),
    event_json(room={"sid": "RM_1", "name": "a", "enabledCodecs": [None]}),
    event_json(room={"sid": "RM_1", "enabledCodecs": {"mime": "x"}}),
    event_json(participant={"state": "NOT_A_STATE"}),
    event_json(participant={"state": 99}),
    event_json(participant={"state": "2"}),
    event_json(participant={"state": 2.0}),
    event_json(participant={"identity": "\ud800"}),
    event_json(participant={"identity": "\ud83d\ude00 ✓"}),
    event_json(participant={"attributes": {"\udc00": "x"}}),
    event_json(participant={"attributes": {"k": 1}}),
    event_json(participant={"attributes": {"k": None}}),
    event_json(participant={"attributes": []}),
    event_json(participant={"permission": {"canPublish": "true"}}),
    event_json(participant={"permission": {"canPublishSources": ["NOPE"]}}),
    event_json(participant={"sid": "a", "identity": "b", "joined_at": "5", "joinedAt": "6"}),
    event_json(**{"[ext.name]": 1}),
    event_json(egressInfo={"egressId": "EG_1", "roomName": "r", "status": "EGRESS_ACTIVE"}),
    event_json(egressInfo={"egressId": "EG_1", "file": {"filename": "a"}, "stream": {}}),
    event_json(ingressInfo={"ingressId": "IN_1", "state": {"status": "ENDPOINT_BUFFERING"}}),
    event_json(track={"sid": "TR", "audioFeatures": ["TF_STEREO", 1]}),
    '{"event": "a", "event": "b"}',
    '{"event": "a", "room": {"sid": "x", "sid": "y"}}',
    '{"event": "a", "ignored": {"k": 1, "k": 2}}',
    '{"event": "a", "createdAt": NaN}',
    '{"id": "x"',
    "[]",
    '"text"',
    "null",
    "{}",
    '{"room": ' * 40 + "{}" + "}" * 40,
]


@pytest.mark.parametrize("text", EDGES)
def test_edge_cases_read_or_refused_as_parse_does(text: str) -> None:
    want = outcome(parse, text, api.WebhookEvent)
    assert outcome(parse_json, text, api.WebhookEvent) == want


def test_the_edges_cover_both_answers() -> None:
    answers = [outcome(parse, text, api.WebhookEvent).split()[0] for text in EDGES]
    assert answers.count("read") >= 10
    assert answers.count("refused") >= 10
