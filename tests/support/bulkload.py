"""A client that keeps submitting `createBulk` calls through faults, re-sending what failed.

It records what the API said it accepted (room -> job) and when, so a fault test can hold the
service to exactly that: every accepted create created once and announced.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from redis.asyncio import Redis

from tests.support.api import Api, minimal_request
from tests.support.servers import Receiver
from worker import keys

RESEND_PAUSE_S = 0.1  # between a failed call and its re-send (a client's backoff)


@dataclass
class BulkSubmitter:
    """Submits rooms in calls of `per_call`; a call that fails or is refused is sent again."""

    api: Api
    webhook_url: str
    per_call: int = 50
    accepted: dict[str, str] = field(default_factory=dict)  # room_id -> job_id
    accepted_at: dict[str, float] = field(default_factory=dict)  # room_id -> monotonic time
    existing: set[str] = field(default_factory=set)  # answered "room already exists"
    answered: int = 0  # calls that got an answer (accepted or refused)
    refused: int = 0  # calls answered status:false (nothing accepted)
    failed: int = 0  # calls without an answer (connection refused or reset, timeout)
    refusals: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # msg -> count
    rooms_refused: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # one by one

    async def run(self, room_ids: list[str]) -> None:
        """Submit every room until each is accepted (or reported as already existing)."""
        for start in range(0, len(room_ids), self.per_call):
            await self.submit_until_accepted(room_ids[start : start + self.per_call])

    async def submit_until_accepted(self, rooms: list[str]) -> None:
        """One call's rooms, re-sent until the API has taken all of them."""
        pending = list(rooms)
        while pending:
            body = {"rooms": [minimal_request(r, webhook_url=self.webhook_url) for r in pending]}
            try:
                status, answer = await self.api.post("/auth/room/createBulk", body)
            except (aiohttp.ClientError, TimeoutError):
                self.failed += 1
                await asyncio.sleep(RESEND_PAUSE_S)
                continue
            self.answered += 1
            if status != 202 or not isinstance(answer, dict) or not answer.get("status"):
                self.refused += 1
                msg = answer.get("msg", str(answer)) if isinstance(answer, dict) else str(answer)
                self.refusals[f"HTTP {status}: {msg[:80]}"] += 1
                await asyncio.sleep(RESEND_PAUSE_S)
                continue
            self._take(answer)
            pending = [r for r in pending if r not in self.accepted and r not in self.existing]

    def _take(self, answer: dict[str, Any]) -> None:
        now = time.monotonic()
        for result in answer["results"]:
            room_id = result["room_id"]
            if result["accepted"]:
                self.accepted.setdefault(room_id, result["job_id"])
                self.accepted_at.setdefault(room_id, now)
            elif result.get("msg") == "room already exists":
                self.existing.add(room_id)
            elif str(result.get("msg", "")).startswith("storage full"):
                self.rooms_refused[result["msg"]] += 1  # not taken: sent again with the rest
            else:
                raise AssertionError(f"createBulk refused a valid room: {result}")


async def job_records(redis: Redis, job_ids: list[str]) -> list[dict[str, str]]:
    """The create job records of `job_ids` ({} for a job Redis does not know)."""
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hgetall(keys.job(job_id))
        return list(await pipe.execute())


def announcements(receiver: Receiver) -> dict[str, set[tuple[str, str]]]:
    """room_id -> the distinct (webhook-id, sid) of every `room_created` received."""
    seen: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for hit in receiver.received:
        event = hit.json
        if event.get("event") == "room_created":
            seen[event["room"]["room_id"]].add((hit.headers["webhook-id"], event["room"]["sid"]))
    return seen
