"""Recordings: LiveKit's egress events as plugNmeet's recording events, and auto cloud recording.

Egress events arrive through `POST /webhook` like every LiveKit event and are applied on their
room's FIFO, so a recording's events reach the room's targets in the room's order, after the
`session_ended` when the egress outlives its session (LiveKit queues them per egress, so they
often arrive after `room_finished`). Each egress of ours is one hash (`rk:egress:{id}`) that
records which session it belongs to, what was sent for it, and its file: the body of every
event is decided from it inside one guarded transaction, so a re-run sends nothing twice.

Auto recording: the first admin who joins a room created with `recording_features.is_allow`,
`is_allow_cloud` and `enable_auto_cloud_recording` claims the session's one recording (a field of
the session, set with the join it belongs to) and arms a `record:1` timer; the timer starts a
room composite egress, retrying transient failures on `ROOMKEEPER_RECORDING_RETRY_SCHEDULE`, and
reports a start that never succeeds as `end_recording` with the reason.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from livekit import api
from redis.exceptions import WatchError

from worker import keys
from worker.deps import Deps
from worker.livekit import LiveKitError, LiveKitRejected, LiveKitUnavailable
from worker.logs import get_logger
from worker.queue.schedule import now_ms
from worker.rooms.records import PENDING_STATES, room_info_of
from worker.rooms.timers import Timer, arm
from worker.settings import Settings
from worker.webhooks.bodies import derived_event_id, notify_body, notify_room

log = get_logger("roomkeeper.recordings")

EGRESS_EVENTS = frozenset({"egress_started", "egress_updated", "egress_ended"})
RECORDING_EVENTS = (
    "start_recording",
    "end_recording",
    "recording_proceeded",
    "start_rtmp",
    "end_rtmp",
)
RECORDER_ID = "livekit-egress"
RECORD_TIMER = "record"
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


def is_admin(p: api.ParticipantInfo) -> bool:
    """Whether the participant's token was issued by getJoinToken with `is_admin`.

    The metadata a participant joins with is the token's, signed with LiveKit's secret by
    roomkeeper alone, and the tokens grant no `canUpdateOwnMetadata`, so a client cannot claim it.
    """
    try:
        meta = json.loads(p.metadata) if p.metadata else {}
    except ValueError:
        return False
    return isinstance(meta, dict) and meta.get("is_admin") is True


def wants_auto_recording(record: dict[str, str]) -> bool:
    """Whether the session's room asked for cloud recording as soon as an admin joins."""
    try:
        meta = json.loads(room_info_of(record).get("metadata") or "{}")
    except ValueError:
        return False
    features = meta.get("room_features") if isinstance(meta, dict) else None
    rec = features.get("recording_features") if isinstance(features, dict) else None
    if not isinstance(rec, dict):
        return False
    return all(
        rec.get(k) is True for k in ("is_allow", "is_allow_cloud", "enable_auto_cloud_recording")
    )


def claim_auto_recording(pipe: Any, deps: Deps, room_id: str, sid: str) -> None:
    """In the join's transaction: this session's one recording is claimed; start it now."""
    pipe.hset(keys.room(room_id), "rec_claim", int(time.time()))
    arm(pipe, deps.timers, [Timer(f"{RECORD_TIMER}:1", room_id, sid, now_ms())])


# ------------------------------------------------------------------ starting and stopping


def egress_request(settings: Settings, room_name: str) -> api.RoomCompositeEgressRequest:
    """The room composite `ROOMKEEPER_RECORDING_OUTPUT` describes: a file path or an S3 location."""
    output = settings.recording_output
    if output.startswith("s3://"):
        parts = urlsplit(output)
        query = parse_qs(parts.query)
        s3 = api.S3Upload(
            bucket=parts.netloc,
            region=query.get("region", [""])[0],
            endpoint=query.get("endpoint", [""])[0],
            force_path_style=query.get("force_path_style", [""])[0] in ("1", "true"),
        )
        if settings.recording_s3_access_key and settings.recording_s3_secret:
            s3.access_key = settings.recording_s3_access_key
            s3.secret = settings.recording_s3_secret.get_secret_value()
        file = api.EncodedFileOutput(filepath=parts.path.lstrip("/") or "{room_name}-{time}", s3=s3)
    else:
        file = api.EncodedFileOutput(filepath=output)
    return api.RoomCompositeEgressRequest(room_name=room_name, file_outputs=[file])


async def start_auto(deps: Deps, timer: Timer, record: dict[str, str]) -> None:
    """A `record:N` timer fired for a live session: start its recording, retry, or report."""
    attempt = int(timer.kind.split(":", 1)[1])
    if record.get("egress"):
        return  # started by an earlier run
    try:
        # A run killed after LiveKit started the egress left it running: adopt it.
        running = await deps.livekit.active_room_composites(timer.room_id)
        egress_id = (
            running[0]
            if running
            else await deps.livekit.start_room_composite_egress(
                egress_request(deps.settings, timer.room_id)
            )
        )
    except LiveKitUnavailable as exc:
        schedule = deps.settings.recording_retry_schedule
        if attempt <= len(schedule):
            due = now_ms() + int(schedule[attempt - 1] * 1000)
            async with deps.redis.pipeline(transaction=True) as pipe:
                arm(pipe, deps.timers, [Timer(f"{RECORD_TIMER}:{attempt + 1}", *_ids(timer), due)])
                await pipe.execute()
            log.warning("auto recording will retry", room_id=timer.room_id, error=str(exc))
            return
        await _report_failed(deps, timer, record, f"after {attempt} attempts: {exc}")
        return
    except LiveKitRejected as exc:
        await _report_failed(deps, timer, record, f"livekit refused it ({exc})")
        return
    await _adopt(deps, timer, record, egress_id)
    log.info("auto recording started", room_id=timer.room_id, egress_id=egress_id)


def _ids(timer: Timer) -> tuple[str, str]:
    return timer.room_id, timer.sid


async def _adopt(deps: Deps, timer: Timer, record: dict[str, str], egress_id: str) -> None:
    """Write down the session's recording (guarded: the session must still be this one)."""
    ttl = int(deps.settings.past_rooms_retention_days * 86400)
    async with deps.redis.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(keys.room(timer.room_id))
            if await pipe.hget(keys.room(timer.room_id), "sid") != timer.sid:
                await pipe.reset()
                return
            pipe.multi()
            pipe.hset(keys.room(timer.room_id), "egress", egress_id)
            pipe.hset(keys.egress(egress_id), mapping={**_owner_fields(record), "auto": 1})
            pipe.expire(keys.egress(egress_id), ttl)
            await pipe.execute()
        except WatchError:
            # The session changed meanwhile (a join): it still is ours if its sid is.
            if (await deps.store.room(timer.room_id)).get("sid") == timer.sid:
                await deps.redis.hset(keys.room(timer.room_id), "egress", egress_id)


async def _report_failed(deps: Deps, timer: Timer, record: dict[str, str], why: str) -> None:
    """The recording could not start: tell the room's targets once, with the reason."""
    msg = f"could not start the recording {why}"
    log.warning("auto recording failed", room_id=timer.room_id, sid=timer.sid, reason=msg)
    event_id = derived_event_id(timer.sid, "auto-recording-failed")
    body = notify_body(
        "end_recording",
        notify_room(room_info_of(record), num_participants=int(record.get("participants", 0))),
        event_id=event_id,
        extra={"recording_info": _recording_info("", msg)},
    )
    once = f"{keys.PREFIX}once:{event_id}"
    async with deps.redis.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(once)
            if await pipe.exists(once):
                await pipe.reset()
                return
            pipe.multi()
            pipe.set(once, 1, ex=SEEN_TTL)
            deps.outbox.emit(
                pipe,
                event_id=event_id,
                event="end_recording",
                room_id=timer.room_id,
                body=body,
                room_webhook_url=record.get("webhook_url") or None,
            )
            await pipe.execute()
        except WatchError:
            return


async def stop_session_recording(deps: Deps, record: dict[str, str]) -> None:
    """Stop the session's auto recording before its room is deleted (LiveKit would end it too)."""
    egress_id = record.get("egress")
    if not egress_id:
        return
    try:
        await deps.livekit.stop_egress(egress_id)
    except LiveKitError as exc:
        # DeleteRoom, which follows, ends a room composite anyway.
        log.warning("stop recording failed", egress_id=egress_id, error=str(exc))


# ------------------------------------------------------------------ egress events in


@dataclass(frozen=True)
class _Owner:
    """The session an egress belongs to, and where its events go."""

    fields: dict[str, Any]
    participants: int


def _owner_fields(record: dict[str, str]) -> dict[str, Any]:
    info = room_info_of(record)
    return {
        "room_id": info.get("name", ""),
        "sid": record.get("sid", ""),
        "webhook_url": record.get("webhook_url", ""),
        "info": record.get("info") or "{}",
    }


async def _owner(deps: Deps, event: api.WebhookEvent) -> _Owner | Literal[False] | None:
    """Whose egress this is; None = not ours, False = its room is still being created."""
    info = event.egress_info
    mine = await deps.redis.hgetall(keys.egress(info.egress_id))
    record = await deps.store.room(info.room_name)
    current = bool(record.get("sid")) and record.get("sid") == info.room_id
    participants = int(record.get("participants", 0)) if current else 0
    if mine.get("sid"):
        return _Owner(mine, participants)
    if current:
        return _Owner(_owner_fields(record), participants)
    age = now_ms() - event.created_at * 1000 if event.created_at else 0
    if record.get("state") in PENDING_STATES and age < PENDING_WAIT_MS:
        return False
    past = await deps.redis.hgetall(keys.past_room(info.room_id)) if info.room_id else {}
    if not past:
        return None
    room = {"sid": info.room_id, "name": info.room_name}
    fields = {
        "room_id": info.room_name,
        "sid": info.room_id,
        "webhook_url": past.get("webhook_url", ""),
        "info": json.dumps(room, separators=(",", ":")),
    }
    return _Owner(fields, 0)


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
                fields = {**owner.fields, **{k: v for k, v in mine.items() if k in owner.fields}}
                sends = _sends(event, info, mine)
                pipe.multi()
                _record(pipe, key, info, fields, mine, sends, ttl)
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


def _recording_info(
    record_id: str, msg: str, file: tuple[str, float] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"record_id": record_id, "recorder_id": RECORDER_ID, "recorder_msg": msg}
    if file is not None:
        out["file_path"], out["file_size"] = file
    return out


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
        sends.append((start, _recording_info(info.egress_id, f"{what} started")))
    final = event.event == "egress_ended" or info.status in _FINAL
    if final and not mine.get(f"sent:{end}"):
        sends.append((end, _recording_info(info.egress_id, _end_message(info, stream))))
        file = _file_of(info) if not stream else None
        if info.status == api.EgressStatus.EGRESS_COMPLETE and file is not None:
            sends.append(
                ("recording_proceeded", _recording_info(info.egress_id, "recording ready", file))
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
    )
