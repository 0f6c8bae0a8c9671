"""The bodies roomkeeper sends: plugNmeet's `CommonNotifyEvent`, snake_case, int64 as strings."""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import orjson

from worker.webhooks.events import END_REASONS, EVENT_MODELS, TEST_EVENT, EndReason

__all__ = ["END_REASONS", "EVENTS", "TEST_EVENT", "EndReason"]  # also used from here

# Every event and its body's model, and the end reasons, are in the registry; the events a
# target may filter on are all but the test send's.
# Reasons stored by versions before the codes, so a session ending across an upgrade says a code.
_OLD_REASONS = {
    "ended by the API (endRoom)": "ended_by_api",
    "room_finished": "livekit_finished",
    "livekit no longer has the room": "reconciled",
}


def end_reason(stored: str) -> str:
    """The code for a stored end reason (older free-text reasons mapped to their code)."""
    return _OLD_REASONS.get(stored, stored)


def end_reason_fields(code: str) -> dict[str, str]:
    """`reason` and `reason_text` of a `session_ended` body."""
    return {"reason": code, "reason_text": END_REASONS.get(code, code)}


EVENTS = tuple(e for e in EVENT_MODELS if e != TEST_EVENT)
RECORDER_ID = "livekit-egress"  # plugNmeet's recorder_id: here the recorder is LiveKit's egress


def wants(event: str, events: tuple[str, ...] | str | None) -> bool:
    """Whether a target whose filter is `events` (a tuple, comma-joined, or none = all) takes it."""
    if not events:
        return True
    return event in (events.split(",") if isinstance(events, str) else events)


# Stable ids for events derived from something already unique, so a re-run emits the same id.
_NAMESPACE = uuid.UUID("0b8f6a52-3f8e-4c1e-9a57-6f1d2c0e5a11")
_NAMESPACE_BYTES = _NAMESPACE.bytes


def new_event_id() -> str:
    """A fresh event id (also the Standard Webhooks `webhook-id`)."""
    return str(uuid.uuid4())


def derived_event_id(*parts: str) -> str:
    """The same id for the same parts: `session_ended` of one sid, a LiveKit event forwarded.

    It is `str(uuid.uuid5(_NAMESPACE, "|".join(parts)))`, written out (SHA-1 of the namespace
    and the name, version and variant bits set): the `uuid` module's objects cost four times
    as much, once for every forwarded LiveKit event."""
    name = _NAMESPACE_BYTES + "|".join(parts).encode()
    # SHA-1 because version 5 is defined on it; the id is a name, not a secret.
    digest = bytearray(hashlib.sha1(name, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def notify_room(info: dict[str, Any], num_participants: int | None = None) -> dict[str, Any]:
    """The `room` object of an event, from the room info roomkeeper stores."""
    return {
        "sid": info.get("sid", ""),
        "room_id": info.get("name", ""),
        "empty_timeout": int(info.get("empty_timeout", 0)),
        "max_participants": int(info.get("max_participants", 0)),
        "creation_time": str(info.get("creation_time", 0)),
        "enabled_codecs": info.get("enabled_codecs", []),
        "metadata": info.get("metadata", ""),
        "num_participants": int(
            info.get("num_participants", 0) if num_participants is None else num_participants
        ),
    }


def notify_body(
    event: str,
    room: dict[str, Any],
    *,
    event_id: str,
    created_at: int | None = None,
    participant: dict[str, Any] | None = None,
    track: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """The exact bytes of one event; every delivery and retry sends these same bytes."""
    body: dict[str, Any] = {"event": event, "room": room}
    if participant is not None:
        body["participant"] = participant
    if track is not None:
        body["track"] = track
    if extra:
        body.update(extra)
    body["id"] = event_id
    body["created_at"] = str(int(time.time()) if created_at is None else created_at)
    return orjson.dumps(body)


def recording_info(
    record_id: str, msg: str, file: tuple[str, float] | None = None
) -> dict[str, Any]:
    """plugNmeet's `recording_info`: the egress id, who recorded, why, and the file when ready.

    `file` is the file's location and its size in MB, plugNmeet's unit.
    """
    out: dict[str, Any] = {"record_id": record_id, "recorder_id": RECORDER_ID, "recorder_msg": msg}
    if file is not None:
        out["file_path"], out["file_size"] = file
    return out
