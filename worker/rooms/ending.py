"""Ending rooms, whatever the cause, and the timers and reconciliation that cause it.

Every path to the end meets in `finalize`: one guarded transaction moves the session to `ended`,
files it under past rooms and emits the one `session_ended`. A second caller finds it ended and
does nothing, so a timer, `endRoom`, LiveKit's `room_finished` and reconciliation can race freely.
"""

from __future__ import annotations

import time
from typing import Literal

from redis.exceptions import WatchError

from worker import keys
from worker.deps import Deps
from worker.livekit import LiveKitError
from worker.logs import get_logger
from worker.metrics import TIMER_LATENESS
from worker.queue.schedule import Claim, now_ms
from worker.rooms.records import LIVE_STATES, room_info_of
from worker.rooms.timers import RECONCILE, Timer, disarm, room_timers
from worker.webhooks.bodies import derived_event_id, notify_body, notify_room

log = get_logger("roomkeeper.lifecycle")

EndResult = Literal["ended", "not_active", "not_found"]
RETRY_MS = 2000


async def end_room(
    deps: Deps,
    room_id: str,
    reason: str,
    *,
    sid: str | None = None,
    record: dict[str, str] | None = None,
) -> EndResult:
    """End a live session now: DeleteRoom in LiveKit (404 is fine), then finalize it."""
    record = record if record is not None else await deps.store.room(room_id)
    if not record:
        return "not_found"
    sid = sid or record.get("sid", "")
    previous = await deps.store.transition(
        room_id, sid, to="ending", from_states=(*LIVE_STATES, "ending"), reason=reason
    )
    if previous is None:
        return "not_active"
    try:
        await deps.livekit.delete_room(room_id)
    except LiveKitError:
        # Put the session back as it was; the caller (timer, route) decides when to try again.
        if previous != "ending":
            await deps.store.transition(room_id, sid, to=previous, from_states=("ending",))
        raise
    await finalize(deps, room_id, sid, reason)
    return "ended"


async def finalize(deps: Deps, room_id: str, sid: str, reason: str) -> bool:
    """Move session `sid` to ended and emit `session_ended`; False if it already was."""
    settings = deps.settings
    past_ttl = int(settings.past_rooms_retention_days * 86400)
    while True:
        async with deps.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(keys.room(room_id))
                record = await pipe.hgetall(keys.room(room_id))
                if record.get("sid") != sid or record.get("state") in ("ended", None):
                    await pipe.reset()
                    return False
                info = room_info_of(record)
                ended = time.time()
                reason = record.get("end_reason") or reason
                event_id = derived_event_id(sid, "session_ended")
                body = notify_body(
                    "session_ended",
                    notify_room(info, num_participants=0),
                    event_id=event_id,
                    extra={"reason": reason},
                )
                pipe.multi()
                pipe.hset(
                    keys.room(room_id),
                    mapping={"state": "ended", "ended": ended, "end_reason": reason},
                )
                pipe.expire(keys.room(room_id), past_ttl)
                pipe.zrem(keys.ACTIVE_ROOMS, room_id)
                pipe.hset(
                    keys.past_room(sid),
                    mapping={
                        "room_id": room_id,
                        "room_title": record.get("title", ""),
                        "room_sid": sid,
                        "joined_participants": record.get("joined", "0"),
                        "webhook_url": record.get("webhook_url", ""),
                        "webhook_events": record.get("webhook_events", ""),
                        "created": record.get("created", "0"),
                        "ended": int(ended),
                        "reason": reason,
                    },
                )
                pipe.expire(keys.past_room(sid), past_ttl)
                pipe.zadd(keys.PAST_ROOMS, {sid: ended})
                pipe.zadd(keys.past_by_room(room_id), {sid: ended})
                disarm(pipe, deps.timers, _session_timers(deps, room_id, sid, record))
                deps.outbox.emit(
                    pipe,
                    event_id=event_id,
                    event="session_ended",
                    room_id=room_id,
                    body=body,
                    room_webhook_url=record.get("webhook_url") or None,
                    room_events=record.get("webhook_events"),
                )
                await pipe.execute()
                log.info("room ended", room_id=room_id, sid=sid, reason=reason)
                return True
            except WatchError:
                continue


def _session_timers(deps: Deps, room_id: str, sid: str, record: dict[str, str]) -> list[Timer]:
    return room_timers(
        room_id,
        sid,
        creation_time=int(record.get("created", 0)),
        empty_timeout=int(record.get("empty_timeout", 0)),
        duration_min=int(record.get("duration", 0)),
        warnings=deps.settings.session_ending_warnings,
    )


async def on_timer(deps: Deps, claim: Claim) -> None:
    """Handle one due member of the `timers` schedule."""
    if claim.member == RECONCILE:
        try:
            await reconcile(deps)
        finally:
            interval_ms = int(deps.settings.reconcile_interval * 1000)
            await deps.timers.release(claim, now_ms() + interval_ms)
        return
    timer = Timer.parse(claim.member)
    if timer is None:
        await deps.timers.release(claim)
        return
    try:
        await _fire(deps, timer)
    except LiveKitError as exc:
        log.warning("timer will retry", timer=claim.member, error=str(exc))
        await deps.timers.release(claim, now_ms() + RETRY_MS)
        return
    await deps.timers.release(claim)


async def _fire(deps: Deps, timer: Timer) -> None:
    record = await deps.store.room(timer.room_id)
    if record.get("sid") != timer.sid or record.get("state") not in LIVE_STATES:
        return  # the session ended or was replaced: nothing to do
    TIMER_LATENESS.observe(max(0.0, (now_ms() - timer.deadline_ms) / 1000))
    if timer.kind == "empty":
        if int(record.get("joined", 0)) == 0:
            await end_room(deps, timer.room_id, "empty_timeout", sid=timer.sid, record=record)
    elif timer.kind == "duration":
        await end_room(deps, timer.room_id, "room_duration", sid=timer.sid, record=record)
    elif timer.kind.startswith("warn:"):
        await _warn(deps, timer, record)


async def _warn(deps: Deps, timer: Timer, record: dict[str, str]) -> None:
    """Emit `session_ending` once per warning offset."""
    seconds_left = int(timer.kind.split(":", 1)[1])
    event_id = derived_event_id(timer.sid, timer.kind)
    body = notify_body(
        "session_ending",
        notify_room(room_info_of(record), num_participants=int(record.get("participants", 0))),
        event_id=event_id,
        extra={
            "ends_at": str((timer.deadline_ms // 1000) + seconds_left),
            "seconds_left": seconds_left,
        },
    )
    once = f"{keys.PREFIX}once:{event_id}"
    async with deps.redis.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(once)
            if await pipe.exists(once):
                await pipe.reset()
                return
            pipe.multi()
            pipe.set(once, 1, ex=86400)
            deps.outbox.emit(
                pipe,
                event_id=event_id,
                event="session_ending",
                room_id=timer.room_id,
                body=body,
                room_webhook_url=record.get("webhook_url") or None,
                room_events=record.get("webhook_events"),
            )
            await pipe.execute()
        except WatchError:
            return


async def reconcile(deps: Deps) -> int:
    """End every session LiveKit no longer has; returns how many were ended."""
    active = await deps.redis.zrange(keys.ACTIVE_ROOMS, 0, -1)
    if not active:
        return 0
    try:
        live = {(r["name"], r["sid"]) for r in await deps.livekit.list_rooms()}
    except LiveKitError as exc:
        log.warning("reconcile skipped", error=str(exc))
        return 0
    ended = 0
    for room_id in active:
        record = await deps.store.room(room_id)
        sid = record.get("sid", "")
        if not sid or (room_id, sid) in live:
            continue
        if record.get("state") in (*LIVE_STATES, "ending"):
            if await finalize(deps, room_id, sid, "livekit no longer has the room"):
                ended += 1
        else:
            await deps.redis.zrem(keys.ACTIVE_ROOMS, room_id)
    if ended:
        log.info("reconciled", ended=ended, active=len(active))
    return ended
