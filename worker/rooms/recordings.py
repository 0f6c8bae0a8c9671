"""Recordings: LiveKit's egress events become plugNmeet's recording events.

Egress events arrive through `POST /webhook` like every LiveKit event and are applied on their
room's FIFO, so a recording's events reach the room's targets in the room's order, after the
`session_ended` when the egress outlives its session (LiveKit queues them per egress, so they
often arrive after `room_finished`). Each egress of ours is one hash (`rk:egress:{id}`) that
records which session it belongs to, what was sent for it, and its file: the body of every
event is decided from it inside one guarded transaction, so a re-run sends nothing twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from livekit import api
from redis.exceptions import WatchError

from worker import keys
from worker.deps import Deps
from worker.logs import get_logger
from worker.queue.schedule import now_ms
from worker.rooms.session import RoomSession
from worker.webhooks.bodies import derived_event_id, notify_body, notify_room, recording_info

log = get_logger("roomkeeper.recordings")

EGRESS_EVENTS = frozenset({"egress_started", "egress_updated", "egress_ended"})
SEEN_TTL = 86400
PENDING_WAIT_MS = 30_000
_FINAL = {
    api.EgressStatus.EGRESS_COMPLETE,
    api.EgressStatus.EGRESS_FAILED,
    api.EgressStatus.EGRESS_ABORTED,
    api.EgressStatus.EGRESS_LIMIT_REACHED,
}
_DEPENDENT_KINDS = {api.ParticipantInfo.Kind.EGRESS, api.ParticipantInfo.Kind.AGENT}


# ------------------------------------------------------------------ participants


def is_dependent(p: api.ParticipantInfo) -> bool:
    """Egress, agents and `recorder` participants: LiveKit's IsDependent, never "someone joined"."""
    return p.kind in _DEPENDENT_KINDS or p.permission.recorder


# ------------------------------------------------------------------ egress events in


@dataclass(frozen=True)
class _Owner:
    """The session an egress belongs to, and where its events go."""

    fields: dict[str, Any]
    participants: int
    current: bool  # the session is the room's current one (its record shows the recording)


_OWNER_KEYS = ("room_id", "sid", "webhook_url", "info")


def owner_fields(session: RoomSession) -> dict[str, Any]:
    """What an egress record keeps of the session it belongs to."""
    return {
        "room_id": session.room_id,
        "sid": session.sid,
        "webhook_url": session.webhook_url,
        "webhook_events": session.webhook_events,
        "info": json.dumps(session.info, separators=(",", ":")),
    }


def auto_recording_cmds(pipe: Any, egress_id: str, session: RoomSession, ttl: int) -> None:
    """The egress record of a session's auto recording, written before its first event."""
    pipe.hset(keys.egress(egress_id), mapping={**owner_fields(session), "auto": 1})
    pipe.expire(keys.egress(egress_id), ttl)


async def _owner(deps: Deps, event: api.WebhookEvent) -> _Owner | Literal[False] | None:
    """Whose egress this is; None = not ours, False = its room is still being created."""
    info = event.egress_info
    mine = await deps.redis.hgetall(keys.egress(info.egress_id))
    session = await deps.store.session(info.room_name)
    current = bool(session.sid) and session.sid == info.room_id
    participants = session.participants if current else 0
    if mine.get("sid"):
        kept = {k: mine[k] for k in _OWNER_KEYS if k in mine}
        return _Owner(kept, participants, mine.get("sid") == session.sid)
    if current:
        return _Owner(owner_fields(session), participants, True)
    age = now_ms() - event.created_at * 1000 if event.created_at else 0
    if session.pending and age < PENDING_WAIT_MS:
        return False
    past = await deps.store.past_session(info.room_id)
    if past is None:
        return None
    room = {"sid": info.room_id, "name": info.room_name}
    fields = {
        "room_id": info.room_name,
        "sid": info.room_id,
        "webhook_url": past.webhook_url,
        "webhook_events": past.webhook_events,
        "info": json.dumps(room, separators=(",", ":")),
    }
    return _Owner(fields, 0, False)


async def apply_egress(deps: Deps, event: api.WebhookEvent) -> bool:
    """Apply one egress event to its egress record; False means "not yet" (room pending)."""
    done = keys.lk_event_done(event.id)
    if await deps.redis.exists(done):
        return True
    owner = await _owner(deps, event)
    if owner is False:
        return False
    info = event.egress_info
    if owner is None:
        log.info("egress event dropped: not a room of ours", egress_id=info.egress_id)
        await deps.redis.set(done, 1, ex=SEEN_TTL)
        return True
    key = keys.egress(info.egress_id)
    ttl = int(deps.settings.past_rooms_retention_days * 86400)
    while True:
        async with deps.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key, done)
                if await pipe.exists(done):
                    await pipe.reset()
                    return True
                mine: dict[str, str] = await pipe.hgetall(key)
                # Whoever wrote the egress record first decided its owner; keep to it.
                fields = {**owner.fields, **{k: mine[k] for k in _OWNER_KEYS if k in mine}}
                sends = _sends(event, info, mine)
                pipe.multi()
                _record(pipe, key, info, fields, mine, sends, ttl)
                if owner.current:
                    deps.store.egress_flag_cmds(
                        pipe,
                        fields["room_id"],
                        stream=_is_stream(info),
                        running=info.status not in _FINAL,
                    )
                for name, recording in sends:
                    _emit(deps, pipe, event, info, fields, owner.participants, name, recording)
                pipe.set(done, 1, ex=SEEN_TTL)
                await pipe.execute()
                return True
            except WatchError:
                continue


def _is_stream(info: api.EgressInfo) -> bool:
    req = info.room_composite
    asked = bool(req.stream_outputs) or req.HasField("stream")
    return (asked or bool(info.stream_results)) and not info.file_results


def _file_of(info: api.EgressInfo) -> tuple[str, float] | None:
    """The finished file's location and size in MB (plugNmeet's unit), if there is one."""
    files = list(info.file_results) or ([info.file] if info.HasField("file") else [])
    if not files or not (files[0].location or files[0].filename):
        return None
    return files[0].location or files[0].filename, round(files[0].size / 1_000_000, 2)


def _end_message(info: api.EgressInfo, stream: bool) -> str:
    what = "streaming" if stream else "recording"
    error = info.error or "no reason given"
    status = info.status
    if status == api.EgressStatus.EGRESS_COMPLETE:
        return f"{what} completed"
    if status == api.EgressStatus.EGRESS_FAILED:
        return f"{what} failed: {error}"
    if status == api.EgressStatus.EGRESS_ABORTED:
        return f"{what} aborted: {error}"
    return f"{what} stopped: limit reached ({error})"


def _sends(
    event: api.WebhookEvent, info: api.EgressInfo, mine: dict[str, str]
) -> list[tuple[str, dict[str, Any]]]:
    """The plugNmeet events this egress event calls for that were not sent yet, in order."""
    stream = _is_stream(info)
    start, end = ("start_rtmp", "end_rtmp") if stream else ("start_recording", "end_recording")
    what = "streaming" if stream else "recording"
    sends: list[tuple[str, dict[str, Any]]] = []
    if not mine.get(f"sent:{start}"):
        # Also when egress_started was lost: every end has its start before it.
        sends.append((start, recording_info(info.egress_id, f"{what} started")))
    final = event.event == "egress_ended" or info.status in _FINAL
    if final and not mine.get(f"sent:{end}"):
        sends.append((end, recording_info(info.egress_id, _end_message(info, stream))))
        file = _file_of(info) if not stream else None
        if info.status == api.EgressStatus.EGRESS_COMPLETE and file is not None:
            sends.append(
                ("recording_proceeded", recording_info(info.egress_id, "recording ready", file))
            )
    return sends


def _record(
    pipe: Any,
    key: str,
    info: api.EgressInfo,
    fields: dict[str, Any],
    mine: dict[str, str],
    sends: list[tuple[str, dict[str, Any]]],
    ttl: int,
) -> None:
    now = time.time()
    mapping: dict[str, Any] = {
        **fields,
        "status": api.EgressStatus.Name(info.status),
        "kind": "stream" if _is_stream(info) else "file",
        "updated": now,
    }
    if not mine:
        mapping["started"] = info.started_at / 1e9 if info.started_at else now
        pipe.zadd(keys.RECORDINGS, {info.egress_id: mapping["started"]})
        pipe.zadd(keys.recordings_by_room(fields["room_id"]), {info.egress_id: mapping["started"]})
        pipe.expire(keys.recordings_by_room(fields["room_id"]), ttl)
    if info.status in _FINAL:
        mapping["ended"] = info.ended_at / 1e9 if info.ended_at else now
        mapping["error"] = info.error
        file = _file_of(info)
        if file is not None:
            mapping["file_path"], mapping["file_size"] = file
    for name, _ in sends:
        mapping[f"sent:{name}"] = 1
    pipe.hset(key, mapping=mapping)
    pipe.expire(key, ttl)


def _emit(
    deps: Deps,
    pipe: Any,
    event: api.WebhookEvent,
    info: api.EgressInfo,
    fields: dict[str, Any],
    participants: int,
    name: str,
    recording: dict[str, Any],
) -> None:
    event_id = derived_event_id("egress", info.egress_id, name)
    room = notify_room(json.loads(fields.get("info") or "{}"), num_participants=participants)
    body = notify_body(
        name,
        room,
        event_id=event_id,
        created_at=event.created_at or int(time.time()),
        extra={"recording_info": recording},
    )
    deps.outbox.emit(
        pipe,
        event_id=event_id,
        event=name,
        room_id=fields["room_id"],
        body=body,
        room_webhook_url=fields.get("webhook_url") or None,
        room_events=fields.get("webhook_events"),
    )
