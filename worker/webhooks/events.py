"""Every event roomkeeper sends, as a model of its body and when it fires: one registry.

`/openapi.json`'s `webhooks` section and the README's webhook reference are built from
`EVENT_MODELS`, and the bodies `worker.webhooks.bodies` writes are checked against it by the
tests, so a new event is one model and one entry here. The bodies are plugNmeet's
`CommonNotifyEvent`: snake_case, 64-bit integers (`creation_time`, `created_at`, LiveKit's
`joined_at`) as JSON strings of unix seconds, as plugNmeet sends them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EndReason = Literal[
    "empty_timeout", "room_duration", "ended_by_api", "livekit_finished", "reconciled"
]

# `session_ended.reason` is one of these codes (receivers branch on it); `reason_text` says it
# for people and may be reworded.
END_REASONS: dict[str, str] = {
    "empty_timeout": "nobody joined within the room's empty_timeout",
    "room_duration": "the room's room_duration ran out",
    "ended_by_api": "ended through the API (endRoom)",
    "livekit_finished": "LiveKit reported the room finished (room_finished)",
    "reconciled": "LiveKit no longer had the room (found by reconciliation)",
}
TEST_EVENT = "webhook_test"  # sent only by a test send, never filtered


class _Open(BaseModel):
    """A body part receivers should read leniently: newer versions may add fields."""

    model_config = ConfigDict(extra="allow")


class Codec(_Open):
    """One codec LiveKit enabled for the room."""

    mime: str = ""
    fmtp_line: str = ""


class NotifyRoom(_Open):
    """The room an event is about (plugNmeet's `NotifyEvent.room`)."""

    sid: str = Field(description="LiveKit's room sid (RM_...), one per session")
    room_id: str = Field(description="the room_id given at create")
    empty_timeout: int
    max_participants: int
    creation_time: str = Field(description="unix seconds, as a string")
    enabled_codecs: list[Codec]
    metadata: str = Field(description="the room's normalised metadata, as JSON text")
    num_participants: int


class Participant(_Open):
    """LiveKit's ParticipantInfo, snake_case (every field LiveKit sent is passed on)."""

    sid: str
    identity: str
    name: str = ""
    state: str | None = Field(None, description="JOINING, JOINED, ACTIVE or DISCONNECTED")
    metadata: str = ""
    joined_at: str | None = Field(None, description="unix seconds, as a string")
    is_publisher: bool | None = None


class Track(_Open):
    """LiveKit's TrackInfo, snake_case (every field LiveKit sent is passed on)."""

    sid: str
    type: str | None = Field(None, description="AUDIO, VIDEO or DATA")
    name: str = ""
    source: str | None = Field(None, description="CAMERA, MICROPHONE, SCREEN_SHARE, ...")
    muted: bool | None = None


class Event(_Open):
    """What every event carries."""

    event: str
    room: NotifyRoom
    id: str = Field(description="unique per event; also the Standard Webhooks webhook-id")
    created_at: str = Field(description="unix seconds, as a string")


class RoomCreated(Event):
    """`room_created`."""

    event: Literal["room_created"]


class RoomStarted(Event):
    """`room_started`."""

    event: Literal["room_started"]


class RoomFinished(Event):
    """`room_finished`."""

    event: Literal["room_finished"]


class ParticipantJoined(Event):
    """`participant_joined`."""

    event: Literal["participant_joined"]
    participant: Participant


class ParticipantLeft(Event):
    """`participant_left`."""

    event: Literal["participant_left"]
    participant: Participant


class TrackPublished(Event):
    """`track_published`."""

    event: Literal["track_published"]
    participant: Participant
    track: Track


class TrackUnpublished(Event):
    """`track_unpublished`."""

    event: Literal["track_unpublished"]
    participant: Participant
    track: Track


class SessionEnding(Event):
    """`session_ending`."""

    event: Literal["session_ending"]
    ends_at: str = Field(description="unix seconds, as a string: when room_duration runs out")
    seconds_left: int


class SessionEnded(Event):
    """`session_ended`."""

    event: Literal["session_ended"]
    reason: EndReason = Field(description="why, as a code receivers may branch on")
    reason_text: str = Field(description="why, in words (may be reworded between versions)")


class RecordingInfo(_Open):
    """plugNmeet's `recording_info`: which egress, who recorded, what happened, the file."""

    record_id: str = Field(description="LiveKit's egress id (EG_...); empty when none started")
    recorder_id: str = Field(description="livekit-egress")
    recorder_msg: str
    file_path: str | None = Field(None, description="recording_proceeded: the file's location")
    file_size: float | None = Field(None, description="recording_proceeded: size in MB")


class StartRecording(Event):
    """`start_recording`."""

    event: Literal["start_recording"]
    recording_info: RecordingInfo


class EndRecording(Event):
    """`end_recording`."""

    event: Literal["end_recording"]
    recording_info: RecordingInfo


class RecordingProceeded(Event):
    """`recording_proceeded`."""

    event: Literal["recording_proceeded"]
    recording_info: RecordingInfo


class StartRtmp(Event):
    """`start_rtmp`."""

    event: Literal["start_rtmp"]
    recording_info: RecordingInfo


class EndRtmp(Event):
    """`end_rtmp`."""

    event: Literal["end_rtmp"]
    recording_info: RecordingInfo


class RoomScheduled(Event):
    """`room_scheduled`."""

    event: Literal["room_scheduled"]
    start_at: str = Field(description="unix seconds, as a string: when the room is wanted")


class RoomCancelled(Event):
    """`room_cancelled`."""

    event: Literal["room_cancelled"]
    start_at: str = Field(description="unix seconds, as a string: the start it will not have")


class WebhookTest(Event):
    """`webhook_test` (an empty room: nothing happened, the receiver is being checked)."""

    event: Literal["webhook_test"]


@dataclass(frozen=True)
class EventSpec:
    """One outgoing event: its body's model and when it is sent."""

    model: type[Event]
    fires: str


EVENT_MODELS: dict[str, EventSpec] = {
    "room_created": EventSpec(
        RoomCreated, "LiveKit created the room for a create (once per session)."
    ),
    "room_started": EventSpec(
        RoomStarted, "LiveKit reports the room started (forwarded from LiveKit)."
    ),
    "participant_joined": EventSpec(
        ParticipantJoined, "Someone joined the room (forwarded from LiveKit)."
    ),
    "participant_left": EventSpec(
        ParticipantLeft, "Someone left the room (forwarded from LiveKit)."
    ),
    "track_published": EventSpec(
        TrackPublished, "A participant published a track (forwarded from LiveKit)."
    ),
    "track_unpublished": EventSpec(
        TrackUnpublished, "A participant unpublished a track (forwarded from LiveKit)."
    ),
    "room_finished": EventSpec(
        RoomFinished, "LiveKit closed the room (forwarded from LiveKit, after session_ended)."
    ),
    "session_ending": EventSpec(
        SessionEnding,
        "ROOMKEEPER_SESSION_ENDING_WARNINGS seconds before room_duration runs out (at once "
        "when a warning is longer than the whole duration).",
    ),
    "session_ended": EventSpec(
        SessionEnded,
        "Exactly once per session, whatever ended it (timer, endRoom, LiveKit, reconciliation).",
    ),
    "start_recording": EventSpec(
        StartRecording, "An egress with a file output started (LiveKit's egress_started)."
    ),
    "end_recording": EventSpec(
        EndRecording,
        "That egress ended (egress_ended), or an auto recording could not start.",
    ),
    "recording_proceeded": EventSpec(
        RecordingProceeded, "The egress completed with a file: its file_path and file_size."
    ),
    "start_rtmp": EventSpec(StartRtmp, "An egress with stream outputs only started."),
    "end_rtmp": EventSpec(EndRtmp, "That streaming egress ended."),
    "room_scheduled": EventSpec(
        RoomScheduled,
        "A create with a start_at beyond ROOMKEEPER_SCHEDULE_LEAD was scheduled, or moved to a "
        "new start_at (the room has no sid yet).",
    ),
    "room_cancelled": EventSpec(
        RoomCancelled, "endRoom cancelled a scheduled room before it was created."
    ),
    TEST_EVENT: EventSpec(
        WebhookTest, "Only when /auth/webhook/test sends one, to the URL it names, at once."
    ),
}

EVENTS = tuple(EVENT_MODELS)


def event_schemas(ref_template: str) -> tuple[dict[str, Any], dict[str, str]]:
    """JSON Schemas of every event body and its parts, and each event's schema name."""
    defs: dict[str, Any] = {}
    names: dict[str, str] = {}
    for event, spec in EVENT_MODELS.items():
        schema = spec.model.model_json_schema(ref_template=ref_template)
        defs.update(schema.pop("$defs", {}))
        defs[spec.model.__name__] = schema
        names[event] = spec.model.__name__
    return defs, names
