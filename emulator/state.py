"""In-memory rooms, participants and tracks, with LiveKit's lifecycle rules.

Storage is plain dicts keyed by room name and participant identity, so every operation except
listing is O(1). Rooms are kept as ``livekit.Room`` protobufs and updated in place: replies are
serialised straight from them, with no conversion layer to drift from the real wire format.

State changes are reported to an :class:`EventSink` (the webhook sender) synchronously and in
order, which is what gives webhooks their per-room ordering.
"""

from __future__ import annotations

import random
import secrets
import string
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from livekit.protocol import models

from .config import MAX_METADATA_SIZE, MAX_ROOM_NAME_LENGTH, EmulatorConfig
from .errors import (
    PARTICIPANT_NOT_FOUND,
    ROOM_NOT_FOUND,
    TwirpError,
    invalid_argument,
    not_found,
)

_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
# Sids only need to be unique, not secret; a seeded Mersenne Twister is ~10x faster than
# drawing from os.urandom for every character.
_rng = random.Random(secrets.randbits(64))

# LiveKit's default RoomConfig.EnabledCodecs (pkg/config/config.go), in the same order.
DEFAULT_CODECS: tuple[str, ...] = (
    "audio/opus",
    "audio/red",
    "video/VP8",
    "video/H264",
    "video/VP9",
    "video/AV1",
    "video/rtx",
)

# Participants the server treats as "dependent": they never keep a room open (rtc/room.go
# CloseIfEmpty skips IsDependent() participants) and are not counted in num_participants.
# A participant whose token has the `recorder` grant counts the same (see _is_dependent).
DEPENDENT_KINDS = frozenset({models.ParticipantInfo.AGENT, models.ParticipantInfo.EGRESS})


def new_sid(prefix: str) -> str:
    """A LiveKit-style id: prefix plus 12 base62 characters (``RM_``, ``PA_``, ``TR_``, ``EV_``)."""
    return prefix + "".join(_rng.choices(_BASE62, k=12))


class EventSink(Protocol):
    """Receives lifecycle events in the order they happen (implemented by the webhook sender)."""

    def emit(
        self,
        event: str,
        room: models.Room,
        participant: models.ParticipantInfo | None = None,
        track: models.TrackInfo | None = None,
        end_reason: int = 0,
    ) -> None:
        """Queue one event; ``room`` is live state, so it must be serialised immediately."""


class NullSink:
    """An :class:`EventSink` that drops everything (state used without webhooks)."""

    def emit(
        self,
        event: str,
        room: models.Room,
        participant: models.ParticipantInfo | None = None,
        track: models.TrackInfo | None = None,
        end_reason: int = 0,
    ) -> None:
        """Ignore the event."""


class RoomEntry:
    """One live room: its protobuf plus the bookkeeping LiveKit keeps beside it."""

    __slots__ = ("active", "first_joined_at", "last_left_at", "participants", "proto")

    def __init__(self, proto: models.Room) -> None:
        self.proto = proto
        self.participants: dict[str, models.ParticipantInfo] = {}
        # Unix seconds, 0 = never; LiveKit compares these in whole seconds.
        self.first_joined_at = 0
        self.last_left_at = 0
        # Participants that keep the room open (everyone but AGENT/EGRESS).
        self.active = 0


def _is_dependent(p: models.ParticipantInfo) -> bool:
    return p.kind in DEPENDENT_KINDS or p.permission.recorder


class State:
    """All rooms of the emulated server and the operations clients can perform on them."""

    def __init__(
        self,
        config: EmulatorConfig,
        sink: EventSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.sink: EventSink = sink or NullSink()
        self.clock = clock
        self.rooms: dict[str, RoomEntry] = {}
        # Rooms nobody keeps open: the only ones the idle ticker has to look at.
        self._idle: set[str] = set()
        # How many idle checks ran; lets tests wait for "the ticker has looked" without sleeping.
        self.idle_checks = 0
        # Called with each room that closes, after its room_finished (egress ends its composites).
        self.on_close: list[Callable[[models.Room], None]] = []

    # ----------------------------------------------------------------- rooms

    def create_room(
        self,
        name: str,
        *,
        empty_timeout: int = 0,
        departure_timeout: int = 0,
        max_participants: int = 0,
        metadata: str = "",
    ) -> models.Room:
        """Get-or-create: an existing room is returned unchanged and no event is sent."""
        existing = self.rooms.get(name)
        if existing is not None:
            return existing.proto
        if not name:
            raise invalid_argument("no room name")
        if len(name.encode()) > MAX_ROOM_NAME_LENGTH:
            raise invalid_argument(
                f"room name length exceeds limits: max length {MAX_ROOM_NAME_LENGTH}"
            )
        if len(metadata.encode()) > MAX_METADATA_SIZE:
            raise invalid_argument(f"metadata size exceeds limits: {MAX_METADATA_SIZE}")
        now = self.clock()
        proto = models.Room(
            sid=new_sid("RM_"),
            name=name,
            empty_timeout=empty_timeout or self.config.default_empty_timeout,
            departure_timeout=departure_timeout or self.config.departure_timeout,
            max_participants=max_participants,
            creation_time=int(now),
            creation_time_ms=int(now * 1000),
            turn_password=secrets.token_urlsafe(24),
            enabled_codecs=[models.Codec(mime=m) for m in DEFAULT_CODECS],
            metadata=metadata,
        )
        self.rooms[name] = RoomEntry(proto)
        self._idle.add(name)
        self.sink.emit("room_started", proto)
        return proto

    def get_room(self, name: str) -> RoomEntry:
        """The room, or ``not_found``."""
        entry = self.rooms.get(name)
        if entry is None:
            raise not_found(ROOM_NOT_FOUND)
        return entry

    def list_rooms(self, names: Iterable[str] = ()) -> list[models.Room]:
        """All rooms in creation order, or only the named ones that exist."""
        wanted = list(names)
        if wanted:
            return [self.rooms[n].proto for n in dict.fromkeys(wanted) if n in self.rooms]
        return [entry.proto for entry in self.rooms.values()]

    def delete_room(self, name: str) -> None:
        """DeleteRoom: everyone leaves (reason ROOM_DELETED), then the room finishes."""
        self._close(self.get_room(name), models.ROOM_DELETED, models.ROOM_END_API_DELETE)

    def update_room_metadata(self, name: str, metadata: str) -> models.Room:
        """Replace the room's metadata and return the room."""
        if len(metadata.encode()) > MAX_METADATA_SIZE:
            raise invalid_argument(f"metadata size exceeds limits: {MAX_METADATA_SIZE}")
        entry = self.get_room(name)
        entry.proto.metadata = metadata
        return entry.proto

    def close_idle_rooms(self) -> int:
        """Close rooms past their empty/departure timeout; returns how many closed.

        Mirrors rtc/room.go CloseIfEmpty: if someone ever joined and has since left, the clock
        is departure_timeout from the last departure; otherwise empty_timeout from creation.
        Both compare whole seconds, like LiveKit.
        """
        self.idle_checks += 1
        now = int(self.clock())
        expired: list[RoomEntry] = []
        for name in self._idle:
            entry = self.rooms[name]
            room = entry.proto
            if entry.first_joined_at > 0 and entry.last_left_at > 0:
                due = now - entry.last_left_at >= room.departure_timeout
            else:
                due = now - room.creation_time >= room.empty_timeout
            if due:
                expired.append(entry)
        for entry in expired:
            self._close(entry, models.ROOM_CLOSED, models.ROOM_END_IDLE_TIMEOUT)
        return len(expired)

    def restore(self, entry: RoomEntry) -> None:
        """Put back a room saved by an earlier run (no events: nothing changed for clients)."""
        name = entry.proto.name
        self.rooms[name] = entry
        if entry.active == 0:
            self._idle.add(name)
        else:
            self._idle.discard(name)

    def clear(self) -> None:
        """Forget every room without sending events (used by the reset endpoint)."""
        self.rooms.clear()
        self._idle.clear()

    def _close(self, entry: RoomEntry, reason: int, end_reason: int) -> None:
        for identity in list(entry.participants):
            self._leave(entry, identity, reason)
        name = entry.proto.name
        del self.rooms[name]
        self._idle.discard(name)
        self.sink.emit("room_finished", entry.proto, end_reason=end_reason)
        for hook in self.on_close:
            hook(entry.proto)

    # ----------------------------------------------------------- participants

    def list_participants(self, room: str) -> list[models.ParticipantInfo]:
        """Participants of a room; an unknown room has none (as LiveKit's store answers)."""
        entry = self.rooms.get(room)
        return list(entry.participants.values()) if entry is not None else []

    def get_participant(self, room: str, identity: str) -> models.ParticipantInfo:
        """One participant, or ``not_found``."""
        entry = self.rooms.get(room)
        participant = entry.participants.get(identity) if entry is not None else None
        if participant is None:
            raise not_found(PARTICIPANT_NOT_FOUND)
        return participant

    def join(
        self,
        room: str,
        identity: str,
        *,
        name: str = "",
        metadata: str = "",
        kind: int = models.ParticipantInfo.STANDARD,
        permission: models.ParticipantPermission | None = None,
    ) -> models.ParticipantInfo:
        """A client connects: the participant becomes ACTIVE and ``participant_joined`` is sent."""
        entry = self.get_room(room)
        if identity in entry.participants:
            raise TwirpError("already_exists", "participant already in room")
        dependent = kind in DEPENDENT_KINDS or (permission is not None and permission.recorder)
        limit = entry.proto.max_participants
        if limit > 0 and not dependent and entry.active >= limit:
            raise TwirpError("resource_exhausted", "room is full")
        now = self.clock()
        participant = models.ParticipantInfo(
            sid=new_sid("PA_"),
            identity=identity,
            name=name,
            metadata=metadata,
            state=models.ParticipantInfo.ACTIVE,
            joined_at=int(now),
            joined_at_ms=int(now * 1000),
            kind=kind,  # type: ignore[arg-type]  # enum values are plain ints at runtime
            permission=permission
            or models.ParticipantPermission(
                can_subscribe=True, can_publish=True, can_publish_data=True
            ),
        )
        entry.participants[identity] = participant
        if not dependent:
            entry.active += 1
            entry.proto.num_participants = entry.active
            if entry.first_joined_at == 0:
                entry.first_joined_at = int(now)
            self._idle.discard(room)
        self.sink.emit("participant_joined", entry.proto, participant)
        return participant

    def leave(
        self, room: str, identity: str, reason: int = models.CLIENT_INITIATED
    ) -> models.ParticipantInfo:
        """A participant disconnects (``participant_left``); ``not_found`` if absent."""
        entry = self.get_room(room)
        if identity not in entry.participants:
            raise not_found(PARTICIPANT_NOT_FOUND)
        return self._leave(entry, identity, reason)

    def remove_participant(self, room: str, identity: str) -> None:
        """RemoveParticipant: the server kicks the participant (reason PARTICIPANT_REMOVED)."""
        entry = self.rooms.get(room)
        if entry is None or identity not in entry.participants:
            raise not_found("participant not found")
        self._leave(entry, identity, models.PARTICIPANT_REMOVED)

    def _leave(self, entry: RoomEntry, identity: str, reason: int) -> models.ParticipantInfo:
        participant = entry.participants.pop(identity)
        if participant.is_publisher:
            entry.proto.num_publishers -= 1
        if not _is_dependent(participant):
            entry.active -= 1
            entry.proto.num_participants = entry.active
            if entry.active == 0:
                entry.last_left_at = int(self.clock())
                self._idle.add(entry.proto.name)
        participant.state = models.ParticipantInfo.DISCONNECTED
        participant.disconnect_reason = reason  # type: ignore[assignment]
        self.sink.emit("participant_left", entry.proto, participant)
        return participant

    # ----------------------------------------------------------------- tracks

    def publish_track(
        self,
        room: str,
        identity: str,
        *,
        track_type: int,
        name: str = "",
        source: int | None = None,
    ) -> models.TrackInfo:
        """The participant publishes a track (``track_published``)."""
        entry = self.get_room(room)
        participant = entry.participants.get(identity)
        if participant is None:
            raise not_found(PARTICIPANT_NOT_FOUND)
        audio = track_type == models.AUDIO
        if source is None:
            source = models.MICROPHONE if audio else models.CAMERA
        track = participant.tracks.add(
            sid=new_sid("TR_"),
            type=track_type,
            name=name,
            source=source,
            mime_type="audio/opus" if audio else "video/VP8",
        )
        if not participant.is_publisher:
            participant.is_publisher = True
            entry.proto.num_publishers += 1
        self.sink.emit("track_published", entry.proto, participant, track)
        return track

    def unpublish_track(self, room: str, identity: str, track_sid: str) -> models.TrackInfo:
        """The participant stops publishing a track (``track_unpublished``)."""
        entry = self.get_room(room)
        participant = entry.participants.get(identity)
        if participant is None:
            raise not_found(PARTICIPANT_NOT_FOUND)
        index = next((i for i, t in enumerate(participant.tracks) if t.sid == track_sid), None)
        if index is None:
            raise not_found("track is not found")
        track = models.TrackInfo()
        track.CopyFrom(participant.tracks[index])
        del participant.tracks[index]
        # LiveKit keeps is_publisher once set; num_publishers follows it, so nothing to undo.
        self.sink.emit("track_unpublished", entry.proto, participant, track)
        return track
