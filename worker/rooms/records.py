"""Room sessions and create jobs in Redis: what state a room is in and what its job did.

A room's current session is one hash (`rk:room:{room_id}`); the states move
`queued → creating → created → active → ending → ended` (or `failed`). Claiming a create is one
Lua script, so concurrent creates of one `room_id` agree on a single job.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis

from worker import keys, lua
from worker.connections import ArqJob

PENDING_STATES = ("queued", "creating")
LIVE_STATES = ("created", "active")


@dataclass(frozen=True)
class CreateClaim:
    """What claiming a create found: a new job, one already pending, or a live room."""

    kind: Literal["new", "pending", "exists", "ending"]
    job_id: str | None = None
    info: dict[str, Any] | None = None


class Store:
    """Typed access to room and job records."""

    def __init__(self, redis: Redis, *, job_ttl_s: int) -> None:
        self.redis = redis
        self.job_ttl_s = job_ttl_s
        self._claim_create = lua.script(redis, "worker.rooms", "claim_create")
        self._transition = lua.script(redis, "worker.rooms", "transition")

    def claim_create_cmd(
        self, pipe: Any, *, room_id: str, job_id: str, request: str, event_id: str
    ) -> None:
        """Add the claim of one create to a pipeline (bulk claims many in one round trip)."""
        # Not `self._claim_create(..., client=pipe)`: the async Script's call is a coroutine, so
        # nothing would be queued. The pipeline loads the registered script before it runs.
        pipe.scripts.add(self._claim_create)
        pipe.evalsha(
            self._claim_create.sha,
            3,
            keys.room(room_id),
            keys.job(job_id),
            keys.QUEUED_JOBS,
            job_id,
            request,
            event_id,
            int(time.time() * 1000),
            room_id,
            self.job_ttl_s,
        )

    @staticmethod
    def parse_claim(raw: list[Any]) -> CreateClaim:
        """Read one claim script's answer."""
        kind, value = (x.decode() if isinstance(x, bytes) else x for x in raw)
        if kind == "exists":
            return CreateClaim("exists", info=json.loads(value) if value else {})
        if kind == "new":
            return CreateClaim("new", job_id=value)
        if kind == "pending":
            return CreateClaim("pending", job_id=value)
        return CreateClaim("ending")

    async def claim_create(
        self,
        *,
        room_id: str,
        job_id: str,
        request: str,
        event_id: str,
        enqueue: ArqJob | None = None,
    ) -> CreateClaim:
        """Start a create of `room_id` unless one is pending or the room is live.

        With `enqueue`, a new claim also writes that arq job, in the same script.
        """
        claim_keys = [keys.room(room_id), keys.job(job_id), keys.QUEUED_JOBS]
        args: list[Any] = [job_id, request, event_id, int(time.time() * 1000), room_id]
        args.append(self.job_ttl_s)
        if enqueue is not None:
            claim_keys += [enqueue.key, enqueue.queue]
            args += [enqueue.payload, enqueue.ttl_ms, enqueue.score, enqueue.job_id]
        raw = await self._claim_create(keys=claim_keys, args=args)
        return self.parse_claim(raw)

    async def job(self, job_id: str) -> dict[str, str]:
        """A create job's record ({} when unknown or expired)."""
        record: dict[str, str] = await self.redis.hgetall(keys.job(job_id))
        return record

    async def jobs(self, job_ids: list[str]) -> list[dict[str, str]]:
        """Several job records in one round trip."""
        return await self._hashes([keys.job(j) for j in job_ids])

    async def _hashes(self, hash_keys: list[str]) -> list[dict[str, str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in hash_keys:
                pipe.hgetall(key)
            records: list[dict[str, str]] = await pipe.execute()
            return records

    async def room(self, room_id: str) -> dict[str, str]:
        """A room's current session ({} when roomkeeper never had it)."""
        record: dict[str, str] = await self.redis.hgetall(keys.room(room_id))
        return record

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

    async def rooms(self, room_ids: list[str]) -> list[dict[str, str]]:
        """Several session records in one round trip."""
        return await self._hashes([keys.room(r) for r in room_ids])

    async def past_rooms(
        self,
        room_ids: list[str],
        *,
        offset: int,
        limit: int,
        newest_first: bool,
        retention_s: float,
    ) -> tuple[int, list[dict[str, str]]]:
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
        return total, [r for r in records if r]

    async def queued_jobs(self) -> int:
        """Creates accepted but not yet started (for back-pressure and the queue-depth metric)."""
        return int(await self.redis.zcard(keys.QUEUED_JOBS))


def room_info_of(record: dict[str, str]) -> dict[str, Any]:
    """The LiveKit room info a session record holds."""
    info: dict[str, Any] = json.loads(record.get("info") or "{}")
    return info


def api_room_info(info: dict[str, Any]) -> dict[str, Any]:
    """A room as `room_info`/`roomInfo` in API answers (`creation_time` a number)."""
    return {
        "sid": info.get("sid", ""),
        "name": info.get("name", ""),
        "max_participants": int(info.get("max_participants", 0)),
        "empty_timeout": int(info.get("empty_timeout", 0)),
        "creation_time": int(info.get("creation_time", 0)),
        "turn_password": info.get("turn_password", ""),
        "enabled_codecs": info.get("enabled_codecs", []),
        "metadata": info.get("metadata", ""),
    }
