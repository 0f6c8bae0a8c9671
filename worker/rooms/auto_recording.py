"""Automatic cloud recording: the first admin of a room that asks for it starts one recording.

A room created with `recording_features.is_allow`, `is_allow_cloud` and
`enable_auto_cloud_recording` gets one room composite egress per session. The first admin who
joins (a token getJoinToken issued with `is_admin`) claims it: a field of the session, set in the
join's own transaction, with a `record:1` timer. The timer starts the egress, retrying transient
failures on `ROOMKEEPER_RECORDING_RETRY_SCHEDULE`, and reports a start that never succeeds as
`end_recording` with the reason. Ending the session stops the egress.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from livekit import api
from redis.exceptions import WatchError

from worker.deps import Deps
from worker.livekit import LiveKitError, LiveKitRejected, LiveKitUnavailable
from worker.logs import get_logger
from worker.queue.schedule import now_ms
from worker.rooms.once import emit_once
from worker.rooms.recordings import auto_recording_cmds
from worker.rooms.session import RoomSession
from worker.rooms.timers import Timer, arm
from worker.settings import Settings
from worker.webhooks.bodies import derived_event_id, notify_body, notify_room, recording_info

log = get_logger("roomkeeper.recordings")

RECORD_TIMER = "record"


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


def wants_auto_recording(session: RoomSession) -> bool:
    """Whether the session's room asked for cloud recording as soon as an admin joins."""
    try:
        meta = json.loads(session.info.get("metadata") or "{}")
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
    deps.store.recording_claim_cmds(pipe, room_id)
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
        secret = settings.recording_s3_secret
        if settings.recording_s3_access_key and secret and secret.get_secret_value():
            s3.access_key = settings.recording_s3_access_key
            s3.secret = secret.get_secret_value()
        file = api.EncodedFileOutput(filepath=parts.path.lstrip("/") or "{room_name}-{time}", s3=s3)
    else:
        file = api.EncodedFileOutput(filepath=output)
    return api.RoomCompositeEgressRequest(room_name=room_name, file_outputs=[file])


async def start_auto(deps: Deps, timer: Timer, session: RoomSession) -> None:
    """A `record:N` timer fired for a live session: start its recording, retry, or report."""
    attempt = int(timer.kind.split(":", 1)[1])
    if session.egress_id:
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
        await _report_failed(deps, timer, session, f"after {attempt} attempts: {exc}")
        return
    except LiveKitRejected as exc:
        await _report_failed(deps, timer, session, f"livekit refused it ({exc})")
        return
    await _adopt(deps, timer, session, egress_id)
    log.info("auto recording started", room_id=timer.room_id, egress_id=egress_id)


def _ids(timer: Timer) -> tuple[str, str]:
    return timer.room_id, timer.sid


async def _adopt(deps: Deps, timer: Timer, session: RoomSession, egress_id: str) -> None:
    """Write down the session's recording (guarded: the session must still be this one)."""
    ttl = int(deps.settings.past_rooms_retention_days * 86400)
    async with deps.redis.pipeline(transaction=True) as pipe:
        try:
            if (await deps.store.watch_head(pipe, timer.room_id)).sid != timer.sid:
                await pipe.reset()
                return
            pipe.multi()
            deps.store.recording_cmds(pipe, timer.room_id, egress_id)
            auto_recording_cmds(pipe, egress_id, session, ttl)
            await pipe.execute()
        except WatchError:
            # The session changed meanwhile (a join): it still is ours if its sid is.
            if (await deps.store.session(timer.room_id)).sid == timer.sid:
                async with deps.redis.pipeline(transaction=True) as again:
                    deps.store.recording_cmds(again, timer.room_id, egress_id)
                    await again.execute()


async def _report_failed(deps: Deps, timer: Timer, session: RoomSession, why: str) -> None:
    """The recording could not start: tell the room's targets once, with the reason."""
    msg = f"could not start the recording {why}"
    log.warning("auto recording failed", room_id=timer.room_id, sid=timer.sid, reason=msg)
    event_id = derived_event_id(timer.sid, "auto-recording-failed")
    body = notify_body(
        "end_recording",
        notify_room(session.info, num_participants=session.participants),
        event_id=event_id,
        extra={"recording_info": recording_info("", msg)},
    )
    await emit_once(deps, session, timer.room_id, "end_recording", event_id, body)


async def stop_session_recording(deps: Deps, session: RoomSession) -> None:
    """Stop the session's auto recording before its room is deleted (LiveKit would end it too)."""
    egress_id = session.egress_id
    if not egress_id:
        return
    try:
        await deps.livekit.stop_egress(egress_id)
    except LiveKitError as exc:
        # DeleteRoom, which follows, ends a room composite anyway.
        log.warning("stop recording failed", egress_id=egress_id, error=str(exc))
