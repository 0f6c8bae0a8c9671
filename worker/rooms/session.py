"""The typed shapes of a room's records in Redis: its session, its past session, its create job.

Each record has its state enum and converts from a Redis hash (`from_hash`) and to the fields it
writes (`to_mapping`). `worker.rooms.records.Store` is the one writer of these records; code
elsewhere reads them through these types.

A session's LiveKit room (`info`, its metadata included: often over a kilobyte) is kept deflated
as body text is (`worker.webhooks.stored.pack_body`) in pieces of at most 64 characters, `i0`,
`i1`, …, so that the whole session stays one hash in Redis's compact encoding (a value over 64
bytes turns a hash into a hash table, several times the size). A session written before keeps
its `info` as JSON, and is read as it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import orjson

from worker.webhooks.stored import pack_body, piece_fields, unpack_body

Fields = dict[str, str | int | float]
E = TypeVar("E", bound=StrEnum)


class RoomState(StrEnum):
    """A session's state: `queued → creating → created → active → ending → ended` (or failed)."""

    QUEUED = "queued"
    CREATING = "creating"
    CREATED = "created"
    ACTIVE = "active"
    ENDING = "ending"
    ENDED = "ended"
    FAILED = "failed"


PENDING_STATES = (RoomState.QUEUED, RoomState.CREATING)
LIVE_STATES = (RoomState.CREATED, RoomState.ACTIVE)


class JobState(StrEnum):
    """A create job's state, as `/auth/job/status` reports it."""

    SCHEDULED = "scheduled"  # waiting for its start time (worker.rooms.scheduled)
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETE = "complete"
    FAILED = "failed"
    CANCELLED = "cancelled"  # a schedule cancelled before its start


def _state(kind: type[E], raw: str | None) -> E | None:
    try:
        return kind(raw) if raw else None
    except ValueError:
        return None


def _int(raw: str | None) -> int:
    return int(float(raw)) if raw else 0


def compact_json(value: Any) -> bytes:
    """`value` (text, integers, lists and dicts) as `json.dumps(value, separators=(",", ":"))`
    writes it, at orjson's cost.

    orjson (in C) writes printable ASCII exactly as `json.dumps` does; text holding anything
    else (beyond ASCII, or DEL) is left to `json`, which escapes it where orjson would not, so
    the stored bytes never depend on the writer.
    """
    try:
        text = orjson.dumps(value)
    except orjson.JSONEncodeError:  # what orjson will not write (an integer beyond 64 bits)
        text = b"\x80"
    if text.isascii() and b"\x7f" not in text:
        return text
    return json.dumps(value, separators=(",", ":")).encode()


def info_fields(info: dict[str, Any]) -> dict[str, str]:
    """A session's LiveKit room as the fields it is stored in (`i0`, `i1`, …)."""
    return piece_fields("i", pack_body(compact_json(info)))


def is_info_field(name: str) -> bool:
    """Whether a session field holds (a piece of) its LiveKit room."""
    return name == "info" or (name[:1] == "i" and name[1:].isdigit())


def joined_info(record: Mapping[str, str]) -> str:
    """A session's LiveKit room as stored: its pieces joined, or its older `info` JSON."""
    if "i0" not in record:
        return record.get("info") or ""
    pieces: list[str] = []
    while (piece := record.get(f"i{len(pieces)}")) is not None:
        pieces.append(piece)
    return "".join(pieces)


def parse_info(stored: str) -> dict[str, Any]:
    """A stored LiveKit room (packed or JSON) as a dict ({} for none)."""
    if not stored:
        return {}
    parsed: dict[str, Any] = json.loads(unpack_body(stored))
    return parsed


@dataclass(frozen=True)
class RoomSession:
    """A room's current (or last) session: `rk:room:{room_id}`."""

    room_id: str
    state: RoomState | None = None
    job_id: str = ""
    sid: str = ""
    info: dict[str, Any] = field(default_factory=dict)  # LiveKit's room, as CreateRoom gave it
    title: str = ""
    webhook_url: str = ""
    webhook_events: str = ""  # the room's event filter, comma-joined; "" = every event
    created: int = 0  # LiveKit's creation_time, unix s
    created_ms: int = 0  # LiveKit's creation_time_ms: what timers count from
    empty_timeout: int = 0
    duration: int = 0  # room_duration, minutes
    participants: int = 0
    joined: int = 0  # participants who ever joined this session
    end_reason: str = ""
    ended: int = 0  # when the session ended, unix s (0 while it has not)
    recording_claimed: bool = False  # its one auto recording was claimed by an admin's join
    egress_id: str = ""  # the auto recording's egress, once started
    is_recording: bool = False
    is_active_rtmp: bool = False

    @classmethod
    def from_hash(cls, room_id: str, record: Mapping[str, str]) -> RoomSession:
        """The session a room hash holds (an empty hash: no state)."""
        return cls(
            room_id=room_id,
            state=_state(RoomState, record.get("state")),
            job_id=record.get("job_id", ""),
            sid=record.get("sid", ""),
            info=parse_info(joined_info(record)),
            title=record.get("title", ""),
            webhook_url=record.get("webhook_url", ""),
            webhook_events=record.get("webhook_events", ""),
            created=_int(record.get("created")),
            created_ms=_int(record.get("created_ms")),
            empty_timeout=_int(record.get("empty_timeout")),
            duration=_int(record.get("duration")),
            participants=_int(record.get("participants")),
            joined=_int(record.get("joined")),
            end_reason=record.get("end_reason", ""),
            ended=_int(record.get("ended")),
            recording_claimed=bool(record.get("rec_claim")),
            egress_id=record.get("egress", ""),
            is_recording=record.get("is_recording") == "1",
            is_active_rtmp=record.get("is_active_rtmp") == "1",
        )

    def to_mapping(self) -> Fields:
        """The fields a created session writes (its state moves on through `Store`)."""
        fields: Fields = {
            "state": str(self.state or ""),
            "job_id": self.job_id,
            "sid": self.sid,
            **info_fields(self.info),
            "title": self.title,
            "webhook_url": self.webhook_url,
            "webhook_events": self.webhook_events,
            "created": self.created,
            "created_ms": self.created_ms,
            "empty_timeout": self.empty_timeout,
            "duration": self.duration,
            "participants": self.participants,
            "joined": self.joined,
        }
        if self.end_reason:
            fields["end_reason"] = self.end_reason
        return fields

    @property
    def live(self) -> bool:
        """Created in LiveKit and not ending."""
        return self.state in LIVE_STATES

    @property
    def pending(self) -> bool:
        """Claimed, its create not finished."""
        return self.state in PENDING_STATES


@dataclass(frozen=True)
class PastSession:
    """An ended session kept for `fetchPastRooms`: `rk:past:{sid}`."""

    room_id: str
    room_sid: str
    room_title: str
    joined_participants: int
    webhook_url: str
    created: int
    ended: int
    reason: str
    webhook_events: str = ""  # the room's event filter, for events of an earlier session

    @classmethod
    def of(cls, session: RoomSession, *, ended: float, reason: str) -> PastSession:
        """What a session leaves behind when it ends."""
        return cls(
            room_id=session.room_id,
            room_sid=session.sid,
            room_title=session.title,
            joined_participants=session.joined,
            webhook_url=session.webhook_url,
            created=session.created,
            ended=int(ended),
            reason=reason,
            webhook_events=session.webhook_events,
        )

    @classmethod
    def from_hash(cls, record: Mapping[str, str]) -> PastSession:
        """The past session a `rk:past:{sid}` hash holds."""
        return cls(
            room_id=record.get("room_id", ""),
            room_sid=record.get("room_sid", ""),
            room_title=record.get("room_title", ""),
            joined_participants=_int(record.get("joined_participants")),
            webhook_url=record.get("webhook_url", ""),
            created=_int(record.get("created")),
            ended=_int(record.get("ended")),
            reason=record.get("reason", ""),
            webhook_events=record.get("webhook_events", ""),
        )

    def view(self) -> dict[str, Any]:
        """plugNmeet's `PastRoomInfo` of it."""
        return {
            "room_title": self.room_title,
            "room_id": self.room_id,
            "room_sid": self.room_sid,
            "joined_participants": self.joined_participants,
            "webhook_url": self.webhook_url,
            "created": self.created,
            "ended": self.ended,
        }

    def to_mapping(self) -> Fields:
        """Its hash fields."""
        return {
            "room_id": self.room_id,
            "room_title": self.room_title,
            "room_sid": self.room_sid,
            "joined_participants": self.joined_participants,
            "webhook_url": self.webhook_url,
            "created": self.created,
            "ended": self.ended,
            "reason": self.reason,
            "webhook_events": self.webhook_events,
        }


@dataclass(frozen=True)
class CreateJob:
    """One room-create job: `rk:job:{job_id}` (written by the claim, then by the worker)."""

    job_id: str
    room_id: str = ""
    state: JobState | None = None
    request: dict[str, Any] = field(default_factory=dict)  # the validated, normalised create
    event_id: str = ""  # the id its `room_created` carries
    attempts: int = 0
    room_info: dict[str, Any] = field(default_factory=dict)  # kept by jobs completed earlier
    msg: str = ""
    last_error: str = ""
    sid: str = ""  # the session a complete job made
    due_ms: int = 0  # a scheduled room's time (start_at - lead), for its lateness; 0 = none
    start_at: int = 0  # a scheduled job's start time, unix s; 0 = created at once

    @classmethod
    def from_hash(cls, job_id: str, record: Mapping[str, str]) -> CreateJob:
        """The job a job hash holds (an empty hash: unknown or expired)."""
        return cls(
            job_id=job_id,
            room_id=record.get("room_id", ""),
            state=_state(JobState, record.get("state")),
            request=json.loads(record.get("request") or "{}"),
            event_id=record.get("event_id", ""),
            attempts=_int(record.get("attempts")),
            room_info=json.loads(record.get("room_info") or "{}"),
            msg=record.get("msg", ""),
            last_error=record.get("last_error", ""),
            sid=record.get("sid", ""),
            due_ms=_int(record.get("due_ms")),
            start_at=_int(record.get("start_at")),
        )

    def to_mapping(self) -> Fields:
        """Its hash fields (those set)."""
        fields: Fields = {"job_id": self.job_id, "room_id": self.room_id, "attempts": self.attempts}
        if self.state:
            fields["state"] = str(self.state)
        if self.request:
            fields["request"] = json.dumps(self.request)
        for name in ("event_id", "msg", "last_error", "sid", "due_ms", "start_at"):
            if value := getattr(self, name):
                fields[name] = value
        if self.room_info:
            fields["room_info"] = json.dumps(self.room_info, separators=(",", ":"))
        return fields

    @property
    def over(self) -> bool:
        """Complete or failed (or gone): nothing left to do."""
        return self.state in (None, JobState.COMPLETE, JobState.FAILED)


def completed_room_info(job: CreateJob, session: RoomSession) -> dict[str, Any]:
    """A complete job's room: its session's info while that session is the room's current one;
    once a newer create has replaced it, only the sid and name the job kept."""
    if job.sid and session.sid == job.sid:
        return session.info
    if job.room_info:  # a job completed before jobs kept only the sid
        return job.room_info
    return {"sid": job.sid, "name": job.room_id}
