"""LiveKit's Egress service for room composites: start, stop, list, and the egress lifecycle.

What the real service does that matters to a client, kept here:

* an egress joins its room as a hidden ``EGRESS`` participant (dependent: it never keeps the
  room open) and leaves when it ends;
* ``egress_started`` (``EGRESS_STARTING``), ``egress_updated`` (``EGRESS_ACTIVE``, later
  ``EGRESS_ENDING``) and ``egress_ended`` (``EGRESS_COMPLETE`` with ``file_results``, or
  ``EGRESS_FAILED`` / ``EGRESS_ABORTED`` with ``error``) go out queued per egress id, so they
  may reach a receiver after the room's ``room_finished``;
* a room composite ends (complete) when its room closes.

No media is recorded: a finished file's size is derived from how long the egress ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from livekit.protocol import egress as egress_pb
from livekit.protocol import models

from .errors import ROOM_NOT_FOUND, TwirpError, not_found
from .state import State, new_sid

EGRESS_NOT_FOUND = "egress does not exist"
# A stand-in bitrate for the size of a "recorded" file: 2 Mbit/s, plus a container header.
_BYTES_PER_SECOND = 250_000
_HEADER_BYTES = 48_000

ACTIVE_STATES = frozenset(
    {egress_pb.EGRESS_STARTING, egress_pb.EGRESS_ACTIVE, egress_pb.EGRESS_ENDING}
)


class EgressSink(Protocol):
    """Receives egress events (implemented by the webhook sender)."""

    def emit_egress(self, event: str, info: egress_pb.EgressInfo) -> None:
        """Queue one egress event; ``info`` is live state, so serialise it now."""


class NullEgressSink:
    """An :class:`EgressSink` that drops everything."""

    def emit_egress(self, event: str, info: egress_pb.EgressInfo) -> None:
        """Ignore the event."""


def _now_ns() -> int:
    return time.time_ns()


def _file_outputs(req: egress_pb.RoomCompositeEgressRequest) -> list[egress_pb.EncodedFileOutput]:
    outputs = list(req.file_outputs)
    if req.HasField("file"):
        outputs.insert(0, req.file)
    return outputs


def _stream_urls(req: egress_pb.RoomCompositeEgressRequest) -> list[str]:
    urls = [u for s in req.stream_outputs for u in s.urls]
    if req.HasField("stream"):
        urls = list(req.stream.urls) + urls
    return urls


def _file_name(output: egress_pb.EncodedFileOutput, room: models.Room, started_s: int) -> str:
    """The egress's file name: the request's template filled in as LiveKit fills it."""
    path = output.filepath or "{room_name}-{time}"
    stamp = time.strftime("%Y-%m-%dT%H%M%S", time.gmtime(started_s))
    for key, value in (
        ("{room_name}", room.name),
        ("{room_id}", room.sid),
        ("{time}", stamp),
        ("{utc}", stamp),
    ):
        path = path.replace(key, value)
    if path.endswith("/"):
        path += f"{room.name}-{stamp}"
    if "." not in path.rsplit("/", 1)[-1]:
        kind = output.file_type
        path += ".ogg" if kind == egress_pb.OGG else ".mp3" if kind == egress_pb.MP3 else ".mp4"
    return path


def _location(output: egress_pb.EncodedFileOutput, filename: str) -> str:
    """Where the file is uploaded: an S3 URL for S3 output, else the path on egress's disk."""
    if output.HasField("s3"):
        s3 = output.s3
        if s3.endpoint:
            return f"{s3.endpoint.rstrip('/')}/{s3.bucket}/{filename}"
        return f"https://{s3.bucket}.s3.amazonaws.com/{filename}"
    return filename


class EgressEntry:
    """One egress: its info (served as is) and what the emulator needs besides."""

    __slots__ = ("info", "outputs", "participant")

    def __init__(self, info: egress_pb.EgressInfo, outputs: list[egress_pb.EncodedFileOutput]):
        self.info = info
        self.outputs = outputs
        self.participant = info.egress_id


class EgressService:
    """Every egress of the emulated server; room closes end their composites."""

    def __init__(
        self,
        state: State,
        sink: EgressSink | None = None,
        clock: Callable[[], int] = _now_ns,
    ) -> None:
        self.state = state
        self.sink: EgressSink = sink or NullEgressSink()
        self.clock = clock
        self.egresses: dict[str, EgressEntry] = {}
        # The next egresses to fail right after they start, with these errors (control API).
        self.fail_next: list[str] = []
        state.on_close.append(self._room_closed)

    def start_room_composite(
        self, req: egress_pb.RoomCompositeEgressRequest
    ) -> egress_pb.EgressInfo:
        """Start recording/streaming a room; ``not_found`` when the room does not exist."""
        entry = self.state.rooms.get(req.room_name)
        if entry is None:
            raise not_found(ROOM_NOT_FOUND)
        outputs = _file_outputs(req)
        urls = _stream_urls(req)
        if not outputs and not urls and not req.segment_outputs and not req.HasField("segments"):
            raise TwirpError("invalid_argument", "no outputs provided")
        room = entry.proto
        now = self.clock()
        info = egress_pb.EgressInfo(
            egress_id=new_sid("EG_"),
            room_id=room.sid,
            room_name=room.name,
            source_type=egress_pb.EGRESS_SOURCE_TYPE_WEB,
            status=egress_pb.EGRESS_STARTING,
            started_at=now,
            updated_at=now,
        )
        info.room_composite.CopyFrom(req)
        for output in outputs:
            info.file_results.add(filename=_file_name(output, room, now // 1_000_000_000))
        for url in urls:
            info.stream_results.add(url=url, started_at=now, status=egress_pb.StreamInfo.ACTIVE)
        egress = EgressEntry(info, outputs)
        self.egresses[info.egress_id] = egress
        reply = egress_pb.EgressInfo()
        reply.CopyFrom(info)
        self.sink.emit_egress("egress_started", info)
        permission = models.ParticipantPermission(hidden=True, recorder=True, can_subscribe=True)
        self.state.join(
            room.name, egress.participant, kind=models.ParticipantInfo.EGRESS, permission=permission
        )
        if self.fail_next:
            self._end(egress, egress_pb.EGRESS_FAILED, self.fail_next.pop(0))
        else:
            self._update(egress, egress_pb.EGRESS_ACTIVE)
        return reply

    def stop(self, egress_id: str) -> egress_pb.EgressInfo:
        """StopEgress: the egress ends complete; the answer shows it ``EGRESS_ENDING``."""
        egress = self.egresses.get(egress_id)
        if egress is None:
            raise not_found(EGRESS_NOT_FOUND)
        if egress.info.status not in ACTIVE_STATES:
            status = egress_pb.EgressStatus.Name(egress.info.status)
            raise TwirpError(
                "failed_precondition", f"egress with status {status} cannot be stopped"
            )
        self._update(egress, egress_pb.EGRESS_ENDING)
        reply = egress_pb.EgressInfo()
        reply.CopyFrom(egress.info)
        self._end(egress, egress_pb.EGRESS_COMPLETE, "")
        return reply

    def end(self, egress_id: str, status: int, error: str) -> egress_pb.EgressInfo:
        """End an egress as the control API says (failed, aborted, limit reached, complete)."""
        egress = self.egresses.get(egress_id)
        if egress is None:
            raise not_found(EGRESS_NOT_FOUND)
        if egress.info.status not in ACTIVE_STATES:
            raise TwirpError("failed_precondition", "egress already ended")
        self._end(egress, status, error)
        return egress.info

    def list(
        self, room_name: str = "", egress_id: str = "", active: bool = False
    ) -> list[egress_pb.EgressInfo]:
        """ListEgress with its three filters."""
        out: list[egress_pb.EgressInfo] = []
        for egress in self.egresses.values():
            info = egress.info
            if room_name and info.room_name != room_name:
                continue
            if egress_id and info.egress_id != egress_id:
                continue
            if active and info.status not in ACTIVE_STATES:
                continue
            out.append(info)
        return out

    def clear(self) -> None:
        """Forget every egress (the reset endpoint)."""
        self.egresses.clear()
        self.fail_next.clear()

    # ------------------------------------------------------------ lifecycle

    def _update(self, egress: EgressEntry, status: int) -> None:
        egress.info.status = status  # type: ignore[assignment]  # enum values are ints
        egress.info.updated_at = self.clock()
        self.sink.emit_egress("egress_updated", egress.info)

    def _end(self, egress: EgressEntry, status: int, error: str) -> None:
        info = egress.info
        now = self.clock()
        info.status = status  # type: ignore[assignment]
        info.ended_at = now
        info.updated_at = now
        if error:
            info.error = error
        seconds = max(0, now - info.started_at) / 1_000_000_000
        for result, output in zip(info.file_results, egress.outputs, strict=False):
            result.started_at = info.started_at
            result.ended_at = now
            result.duration = now - info.started_at
            if status == egress_pb.EGRESS_COMPLETE:
                result.size = _HEADER_BYTES + int(seconds * _BYTES_PER_SECOND)
                result.location = _location(output, result.filename)
        for stream in info.stream_results:
            stream.ended_at = now
            stream.duration = now - stream.started_at
            ok = status == egress_pb.EGRESS_COMPLETE
            stream.status = egress_pb.StreamInfo.FINISHED if ok else egress_pb.StreamInfo.FAILED
            if not ok:
                stream.error = error
        room = self.state.rooms.get(info.room_name)
        if room is not None and egress.participant in room.participants:
            self.state.leave(info.room_name, egress.participant)
        self.sink.emit_egress("egress_ended", info)

    def _room_closed(self, room: models.Room) -> None:
        for egress in list(self.egresses.values()):
            info = egress.info
            if info.room_id == room.sid and info.status in ACTIVE_STATES:
                if info.status != egress_pb.EGRESS_ENDING:
                    self._update(egress, egress_pb.EGRESS_ENDING)
                self._end(egress, egress_pb.EGRESS_COMPLETE, "")
