"""Ending rooms, whatever the cause, and the timers and reconciliation that cause it.

Every path to the end meets in `finalize`: one guarded transaction moves the session to `ended`,
files it under past rooms and emits the one `session_ended`. A second caller finds it ended and
does nothing, so a timer, `endRoom`, LiveKit's `room_finished` and reconciliation can race freely.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from redis.exceptions import WatchError

from worker import keys, lua
from worker.deps import Deps
from worker.livekit import LiveKitError
from worker.logs import get_logger
from worker.metrics import TIMER_LATENESS
from worker.queue.schedule import Claim, now_ms
from worker.rooms.auto_recording import RECORD_TIMER, start_auto, stop_session_recording
from worker.rooms.once import emit_once
from worker.rooms.orphans import requeue_orphans
from worker.rooms.records import LIVE_STATES
from worker.rooms.session import RoomSession, RoomState
from worker.rooms.timers import RECONCILE, Timer, disarm, room_timers
from worker.staged import block, stage
from worker.webhooks.bodies import (
    EndReason,
    derived_event_id,
    end_reason,
    end_reason_fields,
    notify_body,
    notify_room,
)

log = get_logger("roomkeeper.lifecycle")

EndResult = Literal["ended", "not_active", "not_found"]
RETRY_MS = 2000
RECONCILE_CHUNK = 200


async def end_room(
    deps: Deps,
    room_id: str,
    reason: EndReason,
    *,
    sid: str | None = None,
) -> EndResult:
    """End a live session now: DeleteRoom in LiveKit (404 is fine), then finalize it."""
    session = await deps.store.session(room_id)
    if session.state is None:
        return "not_found"
    sid = sid or session.sid
    previous = await deps.store.transition(
        room_id, sid, to="ending", from_states=(*LIVE_STATES, "ending"), reason=reason
    )
    if previous is None:
        return "not_active"
    await _delete_and_finalize(deps, room_id, sid, reason, previous, session)
    return "ended"


async def _delete_and_finalize(
    deps: Deps,
    room_id: str,
    sid: str,
    reason: EndReason,
    previous: str,
    session: RoomSession,
    *,
    read: dict[str, str] | None = None,
    claim: Claim | None = None,
) -> bool:
    """The rest of an end, the session in `ending` (moved there from `previous`); True when
    `claim` (the firing timer) was released with the end (see `finalize`)."""
    await stop_session_recording(deps, session)
    try:
        await deps.livekit.delete_room(room_id)
    except LiveKitError:
        # Put the session back as it was; the caller (timer, route) decides when to try again.
        if previous != "ending":
            await deps.store.transition(room_id, sid, to=previous, from_states=("ending",))
        raise
    if read is not None and await _finalize_as_read(deps, room_id, sid, reason, read, claim):
        return claim is not None
    await finalize(deps, room_id, sid, reason)
    return False


async def finalize(deps: Deps, room_id: str, sid: str, reason: EndReason) -> bool:
    """Move session `sid` to ended and emit `session_ended`; False if it already was."""
    while True:
        async with deps.redis.pipeline(transaction=True) as pipe:
            try:
                session = await deps.store.watch_session(pipe, room_id)
                if session.sid != sid or session.state in (RoomState.ENDED, None):
                    await pipe.reset()
                    return False
                pipe.multi()
                code = _ended_cmds(deps, pipe, session, reason)
                await pipe.execute()
                log.info("room ended", room_id=room_id, sid=sid, reason=code)
                return True
            except WatchError:
                continue


async def _finalize_as_read(
    deps: Deps,
    room_id: str,
    sid: str,
    reason: EndReason,
    read: dict[str, str],
    claim: Claim | None,
) -> bool:
    """`finalize` in one round trip from the session hash as the caller holds it (`read`), with
    the firing timer's release: the writes `finalize` would build from that read, applied by
    `finalize.lua` only while the session is still exactly that. False when it was not (nothing
    was written; `finalize` reads it afresh)."""
    session = RoomSession.from_hash(room_id, read)
    if session.sid != sid or session.state in (RoomState.ENDED, None):
        return False
    staged = stage(deps.redis)
    code = _ended_cmds(deps, staged, session, reason)
    timers = deps.timers
    done = await lua.script(deps.redis, "worker.rooms", "finalize")(
        keys=[*deps.store.session_keys([room_id]), timers.due_key, timers.lease_key],
        args=[
            len(read),
            *(x for pair in read.items() for x in pair),
            claim.member if claim else "",
            claim.token if claim else "",
            block(staged),
        ],
    )
    if not done:
        return False
    log.info("room ended", room_id=room_id, sid=sid, reason=code)
    return True


def _ended_cmds(deps: Deps, pipe: Any, session: RoomSession, reason: EndReason) -> str:
    """The writes of a session's end, added to `pipe`; the end reason they record."""
    past_ttl = int(deps.settings.past_rooms_retention_days * 86400)
    # The first cause recorded wins: a timer's end that LiveKit confirms stays its own.
    code = end_reason(session.end_reason or reason)
    event_id = derived_event_id(session.sid, "session_ended")
    body = notify_body(
        "session_ended",
        notify_room(session.info, num_participants=0),
        event_id=event_id,
        extra=end_reason_fields(code),
    )
    deps.store.ended_cmds(pipe, session, ended=time.time(), reason=code, ttl_s=past_ttl)
    disarm(pipe, deps.timers, _session_timers(deps, session))
    deps.outbox.emit(
        pipe,
        event_id=event_id,
        event="session_ended",
        room_id=session.room_id,
        body=body,
        room_webhook_url=session.webhook_url or None,
        room_events=session.webhook_events,
    )
    return code


def _session_timers(deps: Deps, session: RoomSession) -> list[Timer]:
    return room_timers(
        session.room_id,
        session.sid,
        # Sessions recorded before `created_ms` existed armed their timers from whole seconds.
        creation_ms=session.created_ms or session.created * 1000,
        empty_timeout=session.empty_timeout,
        duration_min=session.duration,
        warnings=deps.settings.session_ending_warnings,
    )


async def on_timer(deps: Deps, claim: Claim) -> None:
    """Handle one due member of the `timers` schedule."""
    if claim.member == RECONCILE:
        try:
            await reconcile(deps)
            await requeue_orphans(deps)
        finally:
            interval_ms = int(deps.settings.reconcile_interval * 1000)
            await deps.timers.release(claim, now_ms() + interval_ms)
        return
    timer = Timer.parse(claim.member)
    if timer is None:
        await deps.timers.release(claim)
        return
    try:
        released = await _fire(deps, timer, claim)
    except LiveKitError as exc:
        log.warning("timer will retry", timer=claim.member, error=str(exc))
        await deps.timers.release(claim, now_ms() + RETRY_MS)
        return
    if not released:
        await deps.timers.release(claim)


async def _fire(deps: Deps, timer: Timer, claim: Claim) -> bool:
    """Act on a due timer; True when its claim was released with the room's end."""
    if timer.kind in _ENDS:
        return await _end_by_timer(deps, timer, _ENDS[timer.kind], claim)
    session = await deps.store.session(timer.room_id)
    if session.sid != timer.sid or not session.live:
        return False  # the session ended or was replaced: nothing to do
    TIMER_LATENESS.observe(max(0.0, (now_ms() - timer.deadline_ms) / 1000))
    if timer.kind.startswith("warn:"):
        await _warn(deps, timer, session)
    elif timer.kind.startswith(f"{RECORD_TIMER}:"):
        await start_auto(deps, timer, session)
    return False


_ENDS: dict[str, EndReason] = {"empty": "empty_timeout", "duration": "room_duration"}


async def _end_by_timer(deps: Deps, timer: Timer, reason: EndReason, claim: Claim) -> bool:
    """An empty or duration timer's end: its checks and the move to `ending` are one round trip
    before DeleteRoom, so the room leaves LiveKit as soon after its deadline as can be; the end
    is then written from the session as begin_end returned it, the timer released with it."""
    since = repr(time.time())  # as Redis keeps it, so the session read below matches its hash
    raw = await lua.script(deps.redis, "worker.rooms", "begin_end")(
        keys=deps.store.session_keys([timer.room_id]),
        # Somebody joined: the room is not empty, it stays.
        args=[timer.sid, since, reason, "1" if timer.kind == "empty" else "", *LIVE_STATES],
    )
    if not raw:
        return False  # the session ended, was replaced or was joined: nothing to do
    was = dict(zip(raw[::2], raw[1::2], strict=True))
    session = RoomSession.from_hash(timer.room_id, was)
    TIMER_LATENESS.observe(max(0.0, (now_ms() - timer.deadline_ms) / 1000))
    previous = session.state or ""
    # The session as begin_end left it: what `finalize` would read after DeleteRoom.
    read = {**was, "state": RoomState.ENDING, "state_since": since, "end_reason": reason}
    return await _delete_and_finalize(
        deps, timer.room_id, timer.sid, reason, previous, session, read=read, claim=claim
    )


async def _warn(deps: Deps, timer: Timer, session: RoomSession) -> None:
    """Emit `session_ending` once per warning offset."""
    seconds_left = int(timer.kind.split(":", 1)[1])
    event_id = derived_event_id(timer.sid, timer.kind)
    body = notify_body(
        "session_ending",
        notify_room(session.info, num_participants=session.participants),
        event_id=event_id,
        extra={
            "ends_at": str((timer.deadline_ms // 1000) + seconds_left),
            "seconds_left": seconds_left,
        },
    )
    await emit_once(deps, session, timer.room_id, "session_ending", event_id, body)


async def reconcile(deps: Deps) -> int:
    """End every session LiveKit no longer has; returns how many were ended."""
    active = await deps.redis.zrange(keys.ACTIVE_ROOMS, 0, -1)
    if not active:
        return 0
    try:
        live = await deps.livekit.live_sessions()
    except LiveKitError as exc:
        log.warning("reconcile skipped", error=str(exc))
        return 0
    ended = 0
    # Sessions read RECONCILE_CHUNK at a time: one round trip each, not one per room, and the
    # timers sharing this loop fire between the chunks.
    for start in range(0, len(active), RECONCILE_CHUNK):
        for session in await deps.store.sessions(active[start : start + RECONCILE_CHUNK]):
            room_id, sid = session.room_id, session.sid
            if not sid or (room_id, sid) in live:
                continue
            if session.live or session.state == RoomState.ENDING:
                if await finalize(deps, room_id, sid, "reconciled"):
                    ended += 1
            else:
                await deps.redis.zrem(keys.ACTIVE_ROOMS, room_id)
    if ended:
        log.info("reconciled", ended=ended, active=len(active))
    return ended
