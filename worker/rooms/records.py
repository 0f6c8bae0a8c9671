"""The one owner of room sessions and create jobs in Redis: every read and write goes here.

A room's current session is one hash (`keys.room`); the states move
`queued → creating → created → active → ending → ended` (or `failed`). Claiming a create is one
Lua script, so concurrent creates of one `room_id` agree on a single job. The records' shapes are
in `worker.rooms.session`; the writes below add commands to the caller's pipeline, so a record
changes in the same transaction as what the change causes (timers, events).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis

from worker import keys, lua
from worker.arqueue import ArqJob
from worker.batching import Call, batcher
from worker.rooms.session import (
    LIVE_STATES,
    PENDING_STATES,
    CreateJob,
    JobState,
    PastSession,
    RoomSession,
    RoomState,
    completed_room_info,
    is_info_field,
    joined_info,
    parse_info,
)

__all__ = ["LIVE_STATES", "PENDING_STATES", "CreateClaim", "Store"]

# What the create path and the event appliers check of a room's session (`Store.head`), besides
# its room's pieces: the hash is read whole, as it is small (its room deflated).
HEAD_FIELDS = ("state", "job_id", "sid", "info")
# What `job/status` reads of a job (`Store.job_statuses`): all but its request.
STATUS_FIELDS = ("state", "room_id", "sid", "room_info", "msg", "last_error", "start_at")


@dataclass(frozen=True)
class CreateClaim:
    """What claiming a create found: a new job, one already pending, or a live room.

    `full`: Redis refused this claim for want of memory (maxmemory, noeviction); nothing of it
    was written.
    """

    kind: Literal["new", "pending", "exists", "ending", "full"]
    job_id: str | None = None
    info: dict[str, Any] | None = None


class Store:
    """Typed access to room and job records."""

    def __init__(self, redis: Redis, *, job_ttl_s: int) -> None:
        self.redis = redis
        self.job_ttl_s = job_ttl_s
        self._claim_create = lua.script(redis, "worker.rooms", "claim_create")
        self._transition = lua.script(redis, "worker.rooms", "transition")
        self._start_create = lua.script(redis, "worker.rooms", "start_create")

    def claim_create_call(
        self,
        *,
        room_id: str,
        job_id: str,
        request: str,
        event_id: str,
        enqueue: ArqJob,
    ) -> Call:
        """The claim of one create, as a script call; a new claim also writes `enqueue`."""
        claim_keys = (keys.room(room_id), keys.job(job_id), keys.QUEUED_JOBS)
        claim_args = (job_id, request, event_id, int(time.time() * 1000), room_id, self.job_ttl_s)
        return Call(
            self._claim_create,
            (*claim_keys, enqueue.key, enqueue.queue),
            (*claim_args, enqueue.payload, enqueue.ttl_ms, enqueue.score, enqueue.job_id),
        )

    def claim_create_cmd(
        self,
        pipe: Any,
        *,
        room_id: str,
        job_id: str,
        request: str,
        event_id: str,
        enqueue: ArqJob,
    ) -> None:
        """Add the claim of one create to a pipeline, which loads the script when missing."""
        # Not `self._claim_create(..., client=pipe)`: the async Script's call is a coroutine, so
        # nothing would be queued.
        pipe.scripts.add(self._claim_create)
        call = self.claim_create_call(
            room_id=room_id, job_id=job_id, request=request, event_id=event_id, enqueue=enqueue
        )
        pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)

    @staticmethod
    def parse_claim(raw: list[Any]) -> CreateClaim:
        """Read one claim script's answer."""
        kind, value = (x.decode() if isinstance(x, bytes) else x for x in raw)
        if kind == "exists":
            return CreateClaim("exists", info=parse_info(value or ""))
        if kind == "new":
            return CreateClaim("new", job_id=value)
        if kind == "pending":
            return CreateClaim("pending", job_id=value)
        return CreateClaim("ending")

    async def session(self, room_id: str) -> RoomSession:
        """A room's current session (no state when roomkeeper never had it)."""
        return RoomSession.from_hash(room_id, await self.redis.hgetall(keys.room(room_id)))

    @staticmethod
    def session_cmd(pipe: Any, room_id: str) -> None:
        """Add the read of a room's session to a pipeline (its answer: `RoomSession.from_hash`)."""
        pipe.hgetall(keys.room(room_id))

    @staticmethod
    def head_cmd(pipe: Any, room_id: str) -> None:
        """Add the read of a session's head (state, job, sid, LiveKit's room) to a pipeline."""
        pipe.hgetall(keys.room(room_id))

    @staticmethod
    def head(room_id: str, row: dict[str, str]) -> RoomSession:
        """The session a `head_cmd` read: only its state, job_id, sid and info are set."""
        fields = {k: v for k, v in row.items() if k in HEAD_FIELDS or is_info_field(k)}
        return RoomSession.from_hash(room_id, fields)

    async def watch_head(self, pipe: Any, room_id: str) -> RoomSession:
        """WATCH a room's session on `pipe`, then read its head there (a later EXEC on `pipe`
        fails if the session changes in between)."""
        await pipe.watch(keys.room(room_id))
        return self.head(room_id, await pipe.hgetall(keys.room(room_id)))

    async def watch_session(self, pipe: Any, room_id: str) -> RoomSession:
        """WATCH a room's session on `pipe`, then read all of it there."""
        await pipe.watch(keys.room(room_id))
        return RoomSession.from_hash(room_id, await pipe.hgetall(keys.room(room_id)))

    @staticmethod
    def session_keys(room_ids: list[str]) -> list[str]:
        """The keys to WATCH for a transaction guarded by these rooms' sessions."""
        return [keys.room(r) for r in room_ids]

    async def sessions(self, room_ids: list[str]) -> list[RoomSession]:
        """Several rooms' current sessions in one round trip."""
        records = await self._hashes([keys.room(r) for r in room_ids])
        return [RoomSession.from_hash(r, rec) for r, rec in zip(room_ids, records, strict=True)]

    async def past_session(self, sid: str) -> PastSession | None:
        """The ended session `sid` (None when unknown or past its retention)."""
        record: dict[str, str] = await self.redis.hgetall(keys.past_room(sid)) if sid else {}
        return PastSession.from_hash(record) if record else None

    async def create_job(self, job_id: str) -> CreateJob:
        """A create job (no state when unknown or expired)."""
        return CreateJob.from_hash(job_id, await self.redis.hgetall(keys.job(job_id)))

    async def create_jobs(self, job_ids: list[str]) -> list[CreateJob]:
        """Several create jobs in one round trip (no state when unknown or expired)."""
        records = await self._hashes([keys.job(j) for j in job_ids])
        return [CreateJob.from_hash(j, r) for j, r in zip(job_ids, records, strict=True)]

    async def job_statuses(self, job_ids: list[str]) -> list[tuple[CreateJob, dict[str, Any]]]:
        """Several create jobs without their requests, each with the room a complete one made
        (`completed_room_info`; {} for the others), in two round trips.

        Not `create_jobs`: HGETALL would also carry each job's request back, several times the
        bytes, and a CLI following a big bulk asks for a thousand jobs every half second.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(keys.job(job_id), *STATUS_FIELDS)
            rows = await pipe.execute()
        jobs = [
            CreateJob.from_hash(
                job_id, {k: v for k, v in zip(STATUS_FIELDS, row, strict=True) if v is not None}
            )
            for job_id, row in zip(job_ids, rows, strict=True)
        ]
        # A complete job keeps only its session's sid; the session has the room (one more trip).
        done = [job for job in jobs if job.state == JobState.COMPLETE]
        infos: dict[str, dict[str, Any]] = {}
        if done:
            rows = await self._hashes([keys.room(job.room_id) for job in done])
            for job, row in zip(done, rows, strict=True):
                info = joined_info(row)  # only the fields the room's info is read from
                current = {"sid": row["sid"], "info": info} if row.get("sid") and info else {}
                session = RoomSession.from_hash(job.room_id, current)
                infos[job.job_id] = completed_room_info(job, session)
        return [(job, infos.get(job.job_id, {})) for job in jobs]

    # -- writes to a caller's pipeline -----------------------------------------------------

    def created_cmds(self, pipe: Any, session: RoomSession, *, sid_ttl_s: int) -> None:
        """A session created in LiveKit: its record, the active index, its sid's owner."""
        pipe.hset(keys.room(session.room_id), mapping=session.to_mapping())
        pipe.zadd(keys.ACTIVE_ROOMS, {session.room_id: session.created})
        pipe.set(keys.sid(session.sid), session.room_id, ex=sid_ttl_s)

    def failed_cmds(self, pipe: Any, room_id: str) -> None:
        """A pending session whose create failed."""
        pipe.hset(keys.room(room_id), "state", RoomState.FAILED)

    def started_cmds(self, pipe: Any, room_id: str) -> None:
        """LiveKit says the room started."""
        pipe.hset(keys.room(room_id), "state", RoomState.ACTIVE)

    def presence_cmds(
        self, pipe: Any, room_id: str, sid: str, *, came: list[str], went: list[str],
        participants: int | None, joined: int, active: bool,
    ) -> None:  # fmt: skip
        """Counted participants who came in (first time present) and went out, the count after
        (None: unchanged), how many joins, whether the session became active (a join makes it
        so): one event's change or several events' net. The set of who is in changes only with
        the session hash, so a WATCH on the hash covers both."""
        members = keys.members(sid)
        if came:
            pipe.sadd(members, *came)
            pipe.expire(members, self.job_ttl_s)
        if went:
            pipe.srem(members, *went)
        fields: dict[str, str | int] = (
            {} if participants is None else {"participants": participants}
        )
        if active:
            fields["state"] = RoomState.ACTIVE
        if fields:
            pipe.hset(keys.room(room_id), mapping=fields)
        if joined:
            pipe.hincrby(keys.room(room_id), "joined", joined)

    def recording_claim_cmds(self, pipe: Any, room_id: str) -> None:
        """The session's one auto recording is claimed (by its first admin's join)."""
        pipe.hset(keys.room(room_id), "rec_claim", int(time.time()))

    def recording_cmds(self, pipe: Any, room_id: str, egress_id: str) -> None:
        """The session's auto recording is this egress."""
        pipe.hset(keys.room(room_id), "egress", egress_id)

    def egress_flag_cmds(self, pipe: Any, room_id: str, *, stream: bool, running: bool) -> None:
        """Whether a recording (or a stream) of the session runs, for ActiveRoomInfo."""
        pipe.hset(keys.room(room_id), "is_active_rtmp" if stream else "is_recording", int(running))

    def ended_cmds(
        self, pipe: Any, session: RoomSession, *, ended: float, reason: str, ttl_s: int
    ) -> None:
        """A session's end: state `ended`, filed under past rooms, out of the active index."""
        room_key = keys.room(session.room_id)
        pipe.hset(
            room_key, mapping={"state": RoomState.ENDED, "ended": ended, "end_reason": reason}
        )
        pipe.expire(room_key, ttl_s)
        pipe.zrem(keys.ACTIVE_ROOMS, session.room_id)
        past = PastSession.of(session, ended=ended, reason=reason)
        pipe.hset(keys.past_room(session.sid), mapping=past.to_mapping())
        pipe.expire(keys.past_room(session.sid), ttl_s)
        pipe.zadd(keys.PAST_ROOMS, {session.sid: ended})
        pipe.zadd(keys.past_by_room(session.room_id), {session.sid: ended})

    def job_complete_cmds(
        self, pipe: Any, job_id: str, info_json: str, *, room_id: str = "", event_id: str = ""
    ) -> None:
        """A job's end as complete, with the session it made.

        The record is written afresh with short fields only (its `event_id`, the id its
        `room_created` carried, stays): the request (and its metadata) was for the create, and
        the room's info is the session's (`completed_room_info`). A hash that once held a long
        value stays in Redis's large encoding, several times the bytes: replaced, not trimmed.
        """
        info = json.loads(info_json or "{}")
        sid, name = info.get("sid", ""), info.get("name", "")
        self.job_done_cmds(pipe, job_id, room_id=room_id or name, sid=sid, event_id=event_id)

    def job_done_cmds(
        self, pipe: Any, job_id: str, *, room_id: str, sid: str, event_id: str
    ) -> None:
        """`job_complete_cmds` given the room's name and sid (no JSON of it written and read)."""
        job = CreateJob(
            job_id, room_id=room_id, state=JobState.COMPLETE, event_id=event_id, sid=sid
        )
        pipe.delete(keys.job(job_id))
        pipe.hset(keys.job(job_id), mapping=job.to_mapping())
        pipe.zrem(keys.QUEUED_JOBS, job_id)
        pipe.expire(keys.job(job_id), self.job_ttl_s)

    def job_failed_cmds(self, pipe: Any, job_id: str, msg: str) -> None:
        """A job's end as failed, with why."""
        pipe.hset(keys.job(job_id), mapping={"state": JobState.FAILED, "msg": msg})
        pipe.zrem(keys.QUEUED_JOBS, job_id)
        pipe.expire(keys.job(job_id), self.job_ttl_s)

    def job_scheduled_cmds(
        self, pipe: Any, job_id: str, room_id: str, start_at: int, *, now: float
    ) -> None:
        """A job waiting for its start time; its record outlives the wait, then the usual."""
        mapping = {"job_id": job_id, "room_id": room_id, "state": JobState.SCHEDULED}
        pipe.hset(keys.job(job_id), mapping={**mapping, "start_at": start_at})
        pipe.expire(keys.job(job_id), int(start_at - now) + self.job_ttl_s)

    def job_cancelled_cmds(self, pipe: Any, job_id: str, msg: str) -> None:
        """A scheduled job's end before its start time."""
        pipe.hset(keys.job(job_id), mapping={"state": JobState.CANCELLED, "msg": msg})
        pipe.expire(keys.job(job_id), self.job_ttl_s)

    def job_found_live_cmds(self, pipe: Any, job_id: str, info_json: str) -> None:
        """A scheduled job whose room was live at its time: complete, with that room."""
        self.job_complete_cmds(pipe, job_id, info_json)
        pipe.hset(keys.job(job_id), "msg", "room already exists")

    def job_due_cmds(self, pipe: Any, job_id: str, due_ms: int) -> None:
        """When a scheduled job's room was due (its lateness is measured against it)."""
        pipe.hset(keys.job(job_id), "due_ms", due_ms)

    def job_attempt_cmds(self, pipe: Any, job_id: str, attempts: int, error: str) -> None:
        """A LiveKit attempt of a job that did not go through (it will retry or fail)."""
        pipe.hset(keys.job(job_id), mapping={"attempts": attempts, "last_error": error})

    # -- reads -----------------------------------------------------------------------------

    async def _hashes(self, hash_keys: list[str]) -> list[dict[str, str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in hash_keys:
                pipe.hgetall(key)
            records: list[dict[str, str]] = await pipe.execute()
            return records

    async def start_create(self, job_id: str, room_id: str) -> bool:
        """Mark the job in progress and its queued session `creating`; False if the job is over."""
        # Batched: the creates that get a LiveKit slot in one turn of the loop (a batch's worth
        # when a job starts) mark themselves in one round trip, each its own script call.
        started = await batcher(self.redis).call(
            self._start_create, (keys.job(job_id), keys.room(room_id)), (job_id,)
        )
        return bool(started)

    async def transition(
        self,
        room_id: str,
        sid: str,
        *,
        to: str,
        from_states: tuple[str, ...],
        reason: str = "",
    ) -> str | None:
        """Move session `sid` to `to` if it is in one of `from_states`; the state it left."""
        previous = await self._transition(
            keys=[keys.room(room_id)], args=[sid, to, time.time(), reason, *from_states]
        )
        return str(previous) if previous else None

    async def active_room_ids(self) -> list[str]:
        """Rooms with a live session, oldest first."""
        ids: list[str] = await self.redis.zrange(keys.ACTIVE_ROOMS, 0, -1)
        return ids

    async def past_rooms(
        self,
        room_ids: list[str],
        *,
        offset: int,
        limit: int,
        newest_first: bool,
        retention_s: float,
    ) -> tuple[int, list[PastSession]]:
        """Ended sessions (of `room_ids`, or all), ordered by end time: (total, one page)."""
        cutoff = time.time() - retention_s
        if room_ids:
            async with self.redis.pipeline(transaction=False) as pipe:
                for room_id in room_ids:
                    pipe.zrangebyscore(keys.past_by_room(room_id), cutoff, "+inf", withscores=True)
                per_room = await pipe.execute()
            entries = sorted((score, sid) for rows in per_room for sid, score in rows)
            if newest_first:
                entries.reverse()
            total = len(entries)
            sids = [sid for _, sid in entries[offset : offset + limit]]
        else:
            await self.redis.zremrangebyscore(keys.PAST_ROOMS, "-inf", f"({cutoff}")
            total = int(await self.redis.zcard(keys.PAST_ROOMS))
            end = offset + limit - 1
            if newest_first:
                sids = await self.redis.zrevrange(keys.PAST_ROOMS, offset, end)
            else:
                sids = await self.redis.zrange(keys.PAST_ROOMS, offset, end)
        records = await self._hashes([keys.past_room(sid) for sid in sids])
        return total, [PastSession.from_hash(r) for r in records if r]

    async def queued_jobs(self) -> int:
        """Creates accepted but not yet started (for back-pressure and the queue-depth metric)."""
        return int(await self.redis.zcard(keys.QUEUED_JOBS))
