"""A claimed room's queued LiveKit events applied several at a time, in order, each once.

The common run of a room's queue (events of its current session that do not end it) is applied
by one read and one transaction for up to `BATCH` events: the session, the events' done-markers
and who is in are read once, each event's change is worked out in turn on what the previous ones
left, and the changes, the forwarded events, the markers and the pop of the handled events
commit together under a WATCH of the session and the markers (the WATCH and the reads share a
round trip). Whatever else comes up (an event of another session, the room's end, egress, a
room still being created) goes one event at a time through `livekit_events.apply`.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from typing import Any

from livekit import api
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ExecAbortError, ResponseError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker import keys
from worker.deps import Deps
from worker.queue.schedule import Claim, now_ms
from worker.rooms import auto_recording, recordings
from worker.rooms.inbox import SEEN_TTL
from worker.rooms.livekit_events import (
    FORWARDED,
    PARTICIPANT_EVENTS,
    PENDING_RETRY_MS,
    PopAfter,
    apply,
    emit_forwarded,
    parse_event,
)
from worker.rooms.session import LIVE_STATES, RoomSession, RoomState

# Events applied per transaction: enough that a busy room's backlog costs a few round trips,
# few enough that one transaction stays short for Redis.
BATCH = 32


async def work(deps: Deps, claim: Claim) -> None:
    """Apply one room's queued LiveKit events in order."""
    schedule = deps.inbound
    items = await schedule.heads(claim.member, BATCH)
    while items:
        events = _leading_events(items)
        batch = await apply_batch(deps, claim, items[: len(events)], events)
        if batch is not None:
            held, items = batch
            if not held:
                return  # lost the lease: whoever holds it now carries on
            if not items:
                return  # the queue is empty and was given back with the pop
            continue
        # The head needs the one-at-a-time path.
        pop = PopAfter(schedule, claim, items[0])
        if not await apply(deps, events[0], pop):
            # The room's create has not finished yet: let this room's queue wait a moment.
            await schedule.release(claim, now_ms() + PENDING_RETRY_MS)
            return
        held, head = await pop.next()
        if not held or head is None:
            return  # lost the lease, or the queue is empty and was given back with the pop
        items = await schedule.heads(claim.member, BATCH)
    await schedule.release(claim)


def _leading_events(items: list[str]) -> list[api.WebhookEvent]:
    """The queued items up to the first that is not an event, parsed (each parsed once)."""
    events: list[api.WebhookEvent] = []
    for item in items:
        try:
            events.append(parse_event(item))
        except ValueError:
            if not events:
                raise  # as the one-event path would: the item stays, the claim fails
            break  # the ones before it are applied; it comes first next time
    return events


async def apply_batch(
    deps: Deps, claim: Claim, items: list[str], events: list[api.WebhookEvent]
) -> tuple[bool, list[str]] | None:
    """Apply the leading run of `events` (parsed from `items`, one each) that the batch path
    takes, and pop them; (whether the lease still holds, the queue's next items). None when the
    first event is not for this path (nothing was done). The batches of rooms worked at once
    share their round trips (see `Group`)."""
    group = _GROUPS.get(deps.redis)
    if group is None:
        group = _GROUPS[deps.redis] = Group()
    return await group.apply(_Batch(deps, claim, items, events))


@dataclass
class _Batch:
    """One room's batch, waiting for its group's answer."""

    deps: Deps
    claim: Claim
    items: list[str]
    events: list[api.WebhookEvent]
    answer: asyncio.Future[tuple[bool, list[str]] | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Group:
    """The batches of the rooms one process works at once, applied together: one WATCH and
    read, one transaction for all (each room's changes worked out on its own reads, as alone).
    A batch made while none is out goes at once; those made while one is out gather behind it
    and go together next, so a lone room waits for nothing. A change to any room's watched keys
    makes the group read again, every room's answer stays its own. A room appears once per
    group: a second batch of it (a claim taken over) waits for the next, so its WATCH sees the
    first's markers."""

    def __init__(self) -> None:
        self._waiting: list[_Batch] = []
        self._out = False

    async def apply(self, batch: _Batch) -> tuple[bool, list[str]] | None:
        self._waiting.append(batch)
        if not self._out:
            self._send()
        return await batch.answer

    def _send(self) -> None:
        rooms: set[str] = set()
        group: list[_Batch] = []
        waiting: list[_Batch] = []
        for batch in self._waiting:
            if batch.answer.done():
                continue  # its caller was cancelled before it went
            (waiting if batch.claim.member in rooms else group).append(batch)
            rooms.add(batch.claim.member)
        self._waiting = waiting
        if not group:
            return
        self._out = True
        # A task of its own: a caller cancelled while the group is out leaves the others be.
        asyncio.create_task(self._run(group)).add_done_callback(self._sent)

    def _sent(self, _task: asyncio.Task[None]) -> None:
        self._out = False
        if self._waiting:
            self._send()

    async def _run(self, group: list[_Batch]) -> None:
        try:
            try:
                answers = await _apply_group(group)
            except Exception:
                if len(group) == 1:
                    raise
                # One room's failure (a key of the wrong type, a refused write) is its own:
                # each batch again on its own, which the done-markers make safe even after a
                # transaction that ran.
                for batch in group:
                    await self._run([batch])
                return
        except Exception as exc:
            for batch in group:
                if not batch.answer.done():
                    batch.answer.set_exception(exc)
            return
        except BaseException:  # cancelled (shutting down): so are the callers' waits
            for batch in group:
                batch.answer.cancel()
            raise
        for batch, answer in zip(group, answers, strict=True):
            if not batch.answer.done():
                batch.answer.set_result(answer)


_GROUPS: weakref.WeakKeyDictionary[Any, Group] = weakref.WeakKeyDictionary()


async def _apply_group(group: list[_Batch]) -> list[tuple[bool, list[str]] | None]:
    """Apply each batch of `group` (rooms all different) in one WATCH/read and transaction."""
    deps = group[0].deps
    store, inbound = deps.store, deps.inbound
    dones = [[keys.lk_event_done(e.id) for e in b.events] for b in group]
    while True:
        async with deps.redis.pipeline(transaction=True) as pipe:
            try:
                # The reads are queued on a pipeline that is never executed: they go after the
                # WATCH, on its connection. Who is in changes only with a write to the watched
                # session hash.
                watched: list[str] = []
                async with deps.redis.pipeline(transaction=False) as reader:
                    for batch, done in zip(group, dones, strict=True):
                        reader.mget(done)
                        store.session_cmd(reader, batch.claim.member)
                        for event in batch.events:
                            reader.sismember(
                                keys.members(event.room.sid), event.participant.identity
                            )
                        watched += [*store.session_keys([batch.claim.member]), *done]
                    answers = await watch_and_read(pipe, watched, reader.command_stack)
                pipe.multi()
                handled: list[int] = []
                pops: list[int] = []  # each batch's pop: its place in the transaction
                at = 0
                for batch in group:
                    seen, record, *member = answers[at : at + 2 + len(batch.events)]
                    at += 2 + len(batch.events)
                    session = RoomSession.from_hash(batch.claim.member, record)
                    n = _queue_changes(deps, pipe, session, batch.events, seen, member)
                    handled.append(n)
                    if n:
                        inbound.pop_many_cmd(pipe, batch.claim, batch.items[:n], BATCH)
                    pops.append(len(pipe.command_stack) - 1 if n else -1)
                if not any(handled):
                    await pipe.reset()
                    return [None] * len(group)
                replies = await commit(pipe)
            except WatchError:
                continue
        popped = set(pops)
        for i, result in enumerate(replies):
            if i not in popped and isinstance(result, Exception):
                raise result
        out: list[tuple[bool, list[str]] | None] = []
        for batch, n, pop in zip(group, handled, pops, strict=True):
            if not n:
                out.append(None)
            elif isinstance(replies[pop], Exception):  # NOSCRIPT: popped on its own now
                out.append(await inbound.pop_many(batch.claim, batch.items[:n], BATCH))
            else:
                out.append(inbound.popped_many(replies[pop]))
        return out


async def watch_and_read(pipe: Any, watched: list[str], reads: list[Any]) -> list[Any]:
    """WATCH `watched` on the transaction `pipe`, then run `reads` (a pipeline's command
    stack) on its connection, in one round trip (redis-py's `watch` and each read after it
    are a round trip each): the reads' answers, each as redis-py gives it. A later EXEC on
    `pipe` fails if a watched key changed after the WATCH, so after these reads too."""
    conn = pipe.connection or await pipe.connection_pool.get_connection()
    pipe.connection = conn  # `pipe` releases it (and unwatches, if it has to) on reset
    commands = [(("WATCH", *watched), {}), *reads]
    await conn.send_packed_command(conn.pack_commands(args for args, _ in commands))
    answers: list[Any] = []
    failure: ResponseError | None = None
    for args, options in commands:  # every reply is read, so the connection stays in step
        callback_options = {k: v for k, v in options.items() if k != "keys"}  # keys: caching
        try:
            answers.append(await pipe.parse_response(conn, args[0], **callback_options))
        except ResponseError as exc:
            failure = failure or exc
            answers.append(None)
    if failure is not None:
        raise failure
    return answers[1:]


async def commit(pipe: Any) -> list[Any]:
    """EXEC the transaction queued on `pipe` (armed by `watch_and_read`, after `multi()`):
    its commands' raw replies, a failed command's as its exception; WatchError when a watched
    key changed or the connection failed (the caller reads again and retries). It is
    redis-py's `execute` without what these writes do not need: every reply through the
    client's layers and the response callbacks of replies nobody reads."""
    conn, stack = pipe.connection, pipe.command_stack
    commands = [("MULTI",), *(args for args, _ in stack), ("EXEC",)]
    try:
        await conn.send_packed_command(conn.pack_commands(commands))
        queued: ResponseError | None = None
        for _ in range(len(stack) + 1):  # MULTI's OK, then each command's QUEUED or refusal
            try:
                await conn.read_response(disable_decoding=True)
            except ResponseError as exc:
                queued = queued or exc
        try:
            replies = await conn.read_response()
        except ExecAbortError:  # a command was refused as queued: nothing ran
            raise queued or ResponseError("transaction aborted") from None
    except (RedisConnectionError, RedisTimeoutError):
        # The connection is dropped (read_response does it), and the WATCH with it; whether
        # the EXEC ran is unknown, which the re-read settles (its events are marked done).
        await conn.disconnect()
        raise WatchError("the connection failed during the transaction") from None
    finally:
        pipe.watching = False  # EXEC or the dropped connection ended the WATCH
    if replies is None:
        raise WatchError("a watched key changed")
    return list(replies)


def _batched(event_name: str) -> bool:
    return event_name not in recordings.EGRESS_EVENTS and event_name != "room_finished"


def _queue_changes(
    deps: Deps,
    pipe: Any,
    session: RoomSession,
    events: list[api.WebhookEvent],
    seen: list[str | None],
    member: list[int],
) -> int:
    """Queue on `pipe` the changes of the leading events this path takes, each worked out on
    the session as the ones before it left it; how many leading events that is (done ones
    included: they are only popped)."""
    room_id, sid = session.room_id, session.sid
    state, participants, claimed = session.state, session.participants, session.recording_claimed
    present: dict[str, bool] = {}  # who is in after the events so far, of those they name
    was_in: dict[str, bool] = {}  # and before them
    joined = 0  # counted joins
    counted_out = False
    applied: set[str] = set()
    handled = 0
    woken = False
    for i, event in enumerate(events):
        if seen[i] or event.id in applied:
            handled = i + 1
            continue
        if not _batched(event.event) or not sid or sid != event.room.sid:
            break
        applied.add(event.id)
        identity = event.participant.identity
        counted = event.event in PARTICIPANT_EVENTS and not recordings.is_dependent(
            event.participant
        )
        live = state in LIVE_STATES
        was_in.setdefault(identity, bool(member[i]))
        is_in = present.get(identity, was_in[identity])
        if live and event.event == "room_started" and state == RoomState.CREATED:
            state = RoomState.ACTIVE
        elif live and counted and event.event == "participant_joined":
            # Counted once per identity present: a repeated join does not inflate it.
            if not is_in:
                participants += 1
                joined += 1
                present[identity] = True
            state = RoomState.ACTIVE
            if (
                not claimed
                and auto_recording.is_admin(event.participant)
                and auto_recording.wants_auto_recording(session)
            ):
                auto_recording.claim_auto_recording(pipe, deps, room_id, sid)
                claimed = True
        elif live and counted and is_in:
            # Left or aborted: only someone counted in is counted out, so never below 0.
            participants = max(0, participants - 1)
            counted_out = True
            present[identity] = False
        if event.event in FORWARDED:
            emit_forwarded(deps, pipe, event, session, participants if live else 0, wake=False)
            woken = True
        pipe.set(keys.lk_event_done(event.id), 1, ex=SEEN_TTL)
        handled = i + 1
    # The events' changes to the session and who is in, written as their net effect.
    deps.store.presence_cmds(
        pipe,
        room_id,
        sid,
        came=[who for who, now in present.items() if now and not was_in[who]],
        went=[who for who, now in present.items() if not now and was_in[who]],
        participants=participants if joined or counted_out else None,
        joined=joined,
        active=state == RoomState.ACTIVE and session.state != RoomState.ACTIVE,
    )
    if woken:
        deps.outbox.schedule.wake(pipe)  # once for the batch's forwarded events
    return handled
