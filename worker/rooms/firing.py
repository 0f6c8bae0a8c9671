"""Creating scheduled rooms when they fall due, through the create path every create takes.

A worker claims up to `create_batch_size` due members of the `sched` schedule under a lease (a
killed worker's claim falls due again), earliest first. For each, in one guarded transaction
(WATCH on the schedule records and the rooms): a room to create is claimed exactly as an API
create claims it (same job id as the schedule, so `job/status` follows it) and the batch's arq
job is written; a room that is live meanwhile completes the job with `room already exists`; the
schedule records go. Then the arq create job does the rest (rate limit, retries, `room_created`,
timers counting from the real creation). The arq job's score is the batch's due time, so a
backlog of due rooms is created in order of `start_at`.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, replace
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import WatchError

from worker import keys
from worker.arqueue import arq_job
from worker.deps import Deps
from worker.logs import get_logger
from worker.queue.consumer import _pause, _until_stopped
from worker.queue.schedule import Claim, now_ms
from worker.rooms.jobs import CREATE_ROOMS, batch_job_id
from worker.rooms.scheduled import FIELDS, unpack, unschedule_cmds
from worker.rooms.session import RoomSession, RoomState

log = get_logger("roomkeeper.scheduled")

# A room still ending, or with another create queued, is looked at again this much later.
BUSY_RETRY_MS = 1000
IDLE_MAX_S = 1.0


@dataclass(frozen=True)
class _Plan:
    """What one claimed member's transaction does."""

    claim: Claim
    action: str  # create | exists | gone | later | busy
    record: dict[str, str]
    room: RoomSession | None = None  # the live session a create found in its way
    next_ms: int = 0


async def fire(deps: Deps, claims: list[Claim]) -> int:
    """Hand the claimed due rooms to the create path; how many were claimed for creation."""
    record_keys = [keys.scheduled(c.member) for c in claims]
    room_keys = deps.store.session_keys([c.member for c in claims])
    lead = deps.settings.schedule_lead
    while True:
        async with deps.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(*record_keys, *room_keys)
                records, rooms = await _read(deps, claims)
                found = zip(claims, records, rooms, strict=True)
                plans = [_plan(c, rec, room, lead) for c, rec, room in found]
                pipe.multi()
                created = _commands(pipe, deps, plans)
                await pipe.execute()
                break
            except WatchError:
                continue  # a schedule moved or a room changed meanwhile: look again
    for plan in plans:
        if plan.action in ("later", "busy"):
            await deps.scheduled.release(plan.claim, plan.next_ms)
    now = time.time()
    for plan in plans:
        if plan.action in ("create", "exists"):
            due_s = int(plan.record["start_at"]) - lead
            log.info(
                "scheduled room due",
                room_id=plan.claim.member,
                job_id=plan.record["job_id"],
                start_at=int(plan.record["start_at"]),
                outcome=plan.action,
                lateness_ms=round((now - due_s) * 1000, 1),
            )
    return created


async def _read(deps: Deps, claims: list[Claim]) -> tuple[list[dict[str, str]], list[RoomSession]]:
    async with deps.redis.pipeline(transaction=False) as reader:
        for c in claims:
            reader.hmget(keys.scheduled(c.member), *FIELDS)
        for c in claims:
            deps.store.head_cmd(reader, c.member)
        rows = await reader.execute()
    records = [
        {k: v for k, v in zip(FIELDS, row, strict=True) if v is not None}
        for row in rows[: len(claims)]
    ]
    rooms = [
        deps.store.head(c.member, row) for c, row in zip(claims, rows[len(claims) :], strict=True)
    ]
    return records, rooms


def _plan(
    claim: Claim,
    record: dict[str, str],
    room: RoomSession,
    lead: float,
) -> _Plan:
    if not record.get("job_id"):
        return _Plan(claim, "gone", record)  # cancelled, or fired by an earlier run
    due = int((int(record["start_at"]) - lead) * 1000)
    if due > now_ms():
        return _Plan(claim, "later", record, next_ms=due)  # moved later meanwhile
    if room.live:
        return _Plan(claim, "exists", record, room)
    if room.state == RoomState.ENDING or room.pending:
        # The session in the way ends (or its create settles) shortly; then this one goes.
        return _Plan(claim, "busy", record, next_ms=now_ms() + BUSY_RETRY_MS)
    return _Plan(claim, "create", record)


def _commands(pipe: Any, deps: Deps, plans: list[_Plan]) -> int:
    """Queue every plan's writes in the transaction; the number of rooms claimed for creation."""
    to_create: list[_Plan] = []
    for plan in plans:
        room_id, record = plan.claim.member, plan.record
        if plan.action == "gone":
            pipe.zrem(deps.scheduled.due_key, room_id)
            pipe.hdel(deps.scheduled.lease_key, room_id)
        elif plan.action == "exists":
            info = plan.room.info if plan.room else {}
            deps.store.job_found_live_cmds(
                pipe, record["job_id"], json.dumps(info, separators=(",", ":"))
            )
            unschedule_cmds(pipe, deps, room_id, record.get("idx", ""))
        elif plan.action == "create":
            to_create.append(plan)
    if not to_create:
        return 0
    job_ids = [p.record["job_id"] for p in to_create]
    first_due = min(int(p.record["start_at"]) for p in to_create) - deps.settings.schedule_lead
    # Scored by due time, not now: arq starts the earliest-due batch first.
    job = replace(
        arq_job(CREATE_ROOMS, (job_ids,), batch_job_id("scheduled", job_ids)),
        score=int(first_due * 1000),
    )
    for plan in to_create:
        room_id, record = plan.claim.member, plan.record
        # The claim an API create makes, arq job included (the same job for the whole batch).
        deps.store.claim_create_cmd(
            pipe,
            room_id=room_id,
            job_id=record["job_id"],
            request=json.dumps(unpack(record["req"]), separators=(",", ":")),
            event_id=record["event_id"],
            enqueue=job,
        )
        # `due_ms` lets the create measure how late the room came (the lateness metric).
        due = int((int(record["start_at"]) - deps.settings.schedule_lead) * 1000)
        deps.store.job_due_cmds(pipe, record["job_id"], due)
        unschedule_cmds(pipe, deps, room_id, record.get("idx", ""))
    return len(to_create)


async def _fire_or_one_by_one(deps: Deps, claims: list[Claim]) -> None:
    """Fire a batch; if it fails, each room alone, so one bad record holds up no other room."""
    try:
        await fire(deps, claims)
    except RedisConnectionError:
        raise
    except Exception:
        log.exception("firing a batch failed; trying its rooms one at a time", rooms=len(claims))
        for claim in claims:
            try:
                await fire(deps, [claim])
            except RedisConnectionError:
                raise
            except Exception:
                # Its lease runs out and it is tried again; the others are not held up.
                log.exception("firing a scheduled room failed", room_id=claim.member)


async def run_firing(deps: Deps, *, waiter: Redis, stop: asyncio.Event) -> None:
    """Fire due schedules until `stop` is set; sleep on the wake list until the next is due."""
    schedule = deps.scheduled
    batch = deps.settings.create_batch_size
    while not stop.is_set():
        try:
            claims = await schedule.claim(batch)
            if claims:
                await _fire_or_one_by_one(deps, claims)
                continue
            nxt = await schedule.next_due_ms()
            timeout = IDLE_MAX_S if nxt is None else min(IDLE_MAX_S, (nxt - now_ms()) / 1000)
            if timeout > 0:
                await _until_stopped(schedule.wait(waiter, timeout), stop)
        except RedisConnectionError as exc:
            # Claimed members fall due again when their lease runs out: nothing is lost.
            log.warning("redis unavailable", schedule=schedule.name, error=str(exc))
            await _pause(stop, 1.0)
        except Exception:
            log.exception("firing scheduled rooms failed")
            await _pause(stop, 1.0)
