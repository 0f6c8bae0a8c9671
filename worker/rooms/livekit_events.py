"""LiveKit's events, after `POST /webhook` verified them: accepted once, applied in order per room.

The API only files an event (deduplicated by LiveKit's `id`) on the room's FIFO of the `in`
schedule and answers. Workers apply each room's events in arrival order (`livekit_batch` works
the queue, several common events per transaction; the rest one at a time here): the state change
and the forwarded event commit together, guarded by a per-event marker so a re-run after a crash
applies nothing twice.
"""

from __future__ import annotations

import base64
import binascii
import time
import zlib
from dataclasses import dataclass
from typing import Any

from google.protobuf.json_format import ParseError
from google.protobuf.message import DecodeError
from livekit import api
from redis.exceptions import WatchError

from worker import keys
from worker.deps import Deps
from worker.livekit import LiveKitError, proto_dict
from worker.logs import get_logger
from worker.protoread import parse_json
from worker.queue.schedule import Claim, Schedule, now_ms
from worker.rooms import auto_recording, recordings
from worker.rooms.ending import finalize
from worker.rooms.inbox import SEEN_TTL
from worker.rooms.session import PastSession, RoomSession, RoomState
from worker.webhooks.bodies import derived_event_id, notify_body, notify_room
from worker.webhooks.stored import PACKED_V1, unpack_body

log = get_logger("roomkeeper.inbound")

FORWARDED = frozenset(
    {
        "room_started",
        "room_finished",
        "participant_joined",
        "participant_left",
        "track_published",
        "track_unpublished",
    }
)
PARTICIPANT_EVENTS = ("participant_joined", "participant_left", "participant_connection_aborted")
# How long an event may wait for its room's create to finish before it is judged not ours.
PENDING_WAIT_MS = 30_000
PENDING_RETRY_MS = 200


def parse_event(item: str) -> api.WebhookEvent:
    """A queued event as a message; ValueError when it is not one.

    An item starting with `{` is LiveKit's JSON body as queued before events were stored
    encoded (an API of the previous version may still be filing them during an upgrade).
    """
    try:
        if item.startswith("{"):
            return parse_json(item, api.WebhookEvent)
        event = api.WebhookEvent()
        if item.startswith(PACKED_V1):
            event.ParseFromString(unpack_body(item))
        else:  # base64 protobuf, as queued before events were deflated
            event.ParseFromString(base64.b64decode(item, validate=True))
        return event
    except (ParseError, DecodeError, binascii.Error, zlib.error) as exc:
        raise ValueError(f"not a LiveKit webhook event: {exc}") from None


@dataclass
class PopAfter:
    """The pop of a claimed room's applied event, made in the transaction that applies it when
    there is one (`answer`: what the pop said; None when it still has to be made)."""

    schedule: Schedule
    claim: Claim
    head: str
    answer: tuple[bool, str | None] | None = None

    def queue(self, pipe: Any) -> None:
        """The pop, last in the applying transaction."""
        self.schedule.pop_next_cmd(pipe, self.claim, self.head)

    def took(self, results: list[Any]) -> None:
        """The transaction's results: the pop's answer kept, any other failure raised."""
        *writes, popped = results
        for result in writes:
            if isinstance(result, Exception):
                raise result
        if not isinstance(popped, Exception):  # NOSCRIPT: popped on its own afterwards
            self.answer = self.schedule.popped(popped)

    async def next(self) -> tuple[bool, str | None]:
        """(whether the lease still holds, the room's next event or None), as `pop_next`."""
        if self.answer is not None:
            return self.answer
        return await self.schedule.pop_next(self.claim, self.head)


async def apply(deps: Deps, event: api.WebhookEvent, pop: PopAfter | None = None) -> bool:
    """Apply one event; False means "not yet" (its room is still being created). `pop`: the
    claimed queue's pop of this event, made in the applying transaction when there is one."""
    if event.event in recordings.EGRESS_EVENTS:
        return await recordings.apply_egress(deps, event)
    done = keys.lk_event_done(event.id)
    room_id, sid = event.room.name, event.room.sid
    # The common case (an event of the room's current session) is applied by this one read
    # and transaction; anything else comes back as the session that was read.
    session = await _apply_to_session(deps, event, room_id, pop, current_only=True)
    if session is None:
        return True
    if not session.sid or session.sid != sid:
        if session.pending and _age_ms(event) < PENDING_WAIT_MS:
            return False
        if event.event == "room_started" and sid and _unwanted(deps, session):
            return await _delete_unwanted(deps, event, session)
        past = await deps.store.past_session(sid)
        if past is None:
            log.info(
                "livekit event dropped: not a room of ours",
                lk_event=event.event,
                room_id=room_id,
                sid=sid,
            )
            await deps.redis.set(done, 1, ex=SEEN_TTL)
            return True
        await _forward(deps, event, room_id, past)
        return True
    # The current session's room_finished: the session is ended first, then the event applied.
    # A session ended already (by a timer or endRoom, the usual case) stays ended for good, so
    # the session just read settles it without finalize's round trips.
    if session.state != RoomState.ENDED:
        await finalize(deps, room_id, sid, "livekit_finished")
    await _apply_to_session(deps, event, room_id, pop)
    return True


def _unwanted(deps: Deps, session: RoomSession) -> bool:
    """A room LiveKit started that must not live: its session was ended by us, or never ours."""
    if session.state is not None:
        return session.state == RoomState.ENDED
    return deps.settings.unknown_rooms == "delete"


async def _delete_unwanted(deps: Deps, event: api.WebhookEvent, session: RoomSession) -> bool:
    """Delete a room re-created behind our back (a client with an old token auto-creates it)."""
    room_id = event.room.name
    if await deps.store.session(room_id) != session:
        return False  # a create of this room began meanwhile: let it take the room instead
    try:
        await deps.livekit.delete_room(room_id)
    except LiveKitError as exc:
        if _age_ms(event) < PENDING_WAIT_MS:
            log.warning("unwanted room not deleted yet", room_id=room_id, error=str(exc))
            return False
        log.error("unwanted room left in livekit", room_id=room_id, error=str(exc))
    else:
        log.info(
            "room re-created in livekit deleted" if session.state else "unknown room deleted",
            room_id=room_id,
            sid=event.room.sid,
            ended_sid=session.sid or None,
        )
    await deps.redis.set(keys.lk_event_done(event.id), 1, ex=SEEN_TTL)
    return True


def _age_ms(event: api.WebhookEvent) -> float:
    return now_ms() - event.created_at * 1000 if event.created_at else 0


async def _apply_to_session(
    deps: Deps,
    event: api.WebhookEvent,
    room_id: str,
    pop: PopAfter | None,
    *,
    current_only: bool = False,
) -> RoomSession | None:
    """Apply `event` to the room's session with the forwarded event, in one transaction; None
    once applied (or found applied already). `current_only`: an event that is not of the
    room's current session, or that ends it, is left alone and its session returned."""
    done = keys.lk_event_done(event.id)
    identity = event.participant.identity
    counted = event.event in PARTICIPANT_EVENTS and not recordings.is_dependent(event.participant)
    while True:
        async with deps.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(*deps.store.session_keys([room_id]), done)
                # Read on another connection: WATCH is already armed, so any change after this
                # read still aborts the EXEC below; one round trip for every read. The member
                # set has no WATCH of its own: every change to it goes with a write to the
                # watched session hash, in the same transaction.
                async with deps.redis.pipeline(transaction=False) as reader:
                    reader.exists(done)
                    deps.store.session_cmd(reader, room_id)
                    if counted:
                        reader.sismember(keys.members(event.room.sid), identity)
                    seen, record, *member = await reader.execute()
                if seen:
                    await pipe.reset()
                    return None
                session = RoomSession.from_hash(room_id, record)
                sid = session.sid
                if current_only and (
                    not sid or sid != event.room.sid or event.event == "room_finished"
                ):
                    await pipe.reset()
                    return session
                live = session.live
                members = keys.members(sid)
                present = False
                if live and counted:
                    if sid == event.room.sid:
                        present = bool(member[0])
                    else:
                        present = bool(await pipe.sismember(members, identity))
                participants = session.participants
                auto = (
                    live
                    and counted
                    and event.event == "participant_joined"
                    and not session.recording_claimed
                    and auto_recording.is_admin(event.participant)
                    and auto_recording.wants_auto_recording(session)
                )
                pipe.multi()
                if live and event.event == "room_started" and session.state == RoomState.CREATED:
                    deps.store.started_cmds(pipe, room_id)
                elif live and counted and event.event == "participant_joined":
                    # Counted once per identity present: a repeated join does not inflate it.
                    if present:
                        deps.store.started_cmds(pipe, room_id)
                    else:
                        participants += 1
                        deps.store.presence_cmds(
                            pipe, room_id, sid, came=[identity], went=[],
                            participants=participants, joined=1, active=True,
                        )  # fmt: skip
                    if auto:
                        auto_recording.claim_auto_recording(pipe, deps, room_id, sid)
                elif live and counted and present:
                    # Left or aborted: only someone counted in is counted out, so never below 0.
                    participants = max(0, participants - 1)
                    deps.store.presence_cmds(
                        pipe, room_id, sid, came=[], went=[identity],
                        participants=participants, joined=0, active=False,
                    )  # fmt: skip
                if event.event in FORWARDED:
                    emit_forwarded(deps, pipe, event, session, participants if live else 0)
                pipe.set(done, 1, ex=SEEN_TTL)
                if pop is None:
                    await pipe.execute()
                else:
                    pop.queue(pipe)
                    pop.took(await pipe.execute(raise_on_error=False))
                return None
            except WatchError:
                continue


def emit_forwarded(
    deps: Deps,
    pipe: Any,
    event: api.WebhookEvent,
    session: RoomSession,
    participants: int,
    *,
    wake: bool = True,
) -> None:
    """Queue the forwarded form of `event` on `pipe` for the session's webhooks (`wake=False`:
    the caller wakes the dispatcher once for many)."""
    event_id = derived_event_id("livekit", event.id)
    body = notify_body(
        event.event,
        notify_room(session.info, num_participants=participants),
        event_id=event_id,
        created_at=event.created_at or int(time.time()),
        participant=proto_dict(event.participant) if event.HasField("participant") else None,
        track=proto_dict(event.track) if event.HasField("track") else None,
    )
    deps.outbox.emit(
        pipe,
        event_id=event_id,
        event=event.event,
        room_id=session.room_id,
        body=body,
        room_webhook_url=session.webhook_url or None,
        room_events=session.webhook_events,
        wake=wake,
    )


async def _forward(deps: Deps, event: api.WebhookEvent, room_id: str, past: PastSession) -> None:
    """Forward an event of an earlier session of ours (its room has a new session now)."""
    done = keys.lk_event_done(event.id)
    if event.event not in FORWARDED:
        await deps.redis.set(done, 1, ex=SEEN_TTL)
        return
    earlier = RoomSession(
        room_id,
        sid=event.room.sid,
        info={"sid": event.room.sid, "name": room_id},
        webhook_url=past.webhook_url,
        webhook_events=past.webhook_events,
    )
    async with deps.redis.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(done)
            if await pipe.exists(done):
                await pipe.reset()
                return
            pipe.multi()
            emit_forwarded(deps, pipe, event, earlier, 0)
            pipe.set(done, 1, ex=SEEN_TTL)
            await pipe.execute()
        except WatchError:
            return
