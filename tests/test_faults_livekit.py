"""LiveKit away without an error answer: silent (accepts, never answers), then refusing
connections, then back. Real `roomkeeper api` and `worker` processes reach the emulator through
a door (tests/support/door.py) that the test turns.

Creates wait at most `ROOMKEEPER_CREATE_WAIT`, answer 202 with their job (and why it is being
retried), `/readyz` names LiveKit as the failing dependency, and every room is created once, with
one `room_created`, once LiveKit is back.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from redis.asyncio import Redis

from emulator.server import Emulator
from tests.support.api import LK_KEY, LK_SECRET, Api, eventually, livekit_rooms, minimal_request
from tests.support.bulkload import announcements, job_records
from tests.support.door import Door, door
from tests.support.procs import api_process, roomkeeper_env, worker_process
from tests.support.servers import Receiver, RedisServer

pytestmark = pytest.mark.slow

CREATE_WAIT = 3.0
LIVEKIT_TIMEOUT = 1.0
BULK = 40


async def readyz(api: Api) -> tuple[int, Any]:
    """`GET /readyz`: (HTTP status, body)."""
    async with api.session.get(f"{api.url}/readyz") as resp:
        return resp.status, await resp.json()


async def retried(redis: Redis, job_ids: list[str]) -> bool:
    """Every job has been tried at least twice, and none finished."""
    records = await job_records(redis, job_ids)
    return all(
        int(r.get("attempts", 0)) >= 2 and r.get("state") in ("queued", "in_progress")
        for r in records
    )


async def complete(redis: Redis, job_ids: list[str]) -> bool:
    """Every job complete."""
    return all(r.get("state") == "complete" for r in await job_records(redis, job_ids))


@pytest.mark.timeout(180)
async def test_a_silent_then_refusing_livekit_delays_creates_and_loses_none(
    redis_server: RedisServer, redis: Redis, receiver: Receiver
) -> None:
    async with (
        Emulator(LK_KEY, LK_SECRET, tick_interval=3600) as emu,
        door(emu.port, "open") as lk,
    ):
        env = roomkeeper_env(
            redis_server.url,
            lk.url,
            ROOMKEEPER_CREATE_WAIT=f"{CREATE_WAIT:g}",
            ROOMKEEPER_LIVEKIT_TIMEOUT=f"{LIVEKIT_TIMEOUT:g}",
            # Retries outlast the outage (the default schedule runs for about ten minutes).
            ROOMKEEPER_CREATE_RETRY_SCHEDULE=",".join(["0.5"] * 200),
        )
        async with api_process(env) as (url, _), worker_process(env):
            api = Api(url)
            assert (await readyz(api))[0] == 200
            jobs: list[str] = []
            seen: dict[str, Any] = {}
            for mode in ("silent", "shut"):
                seen[mode] = await _outage(api, redis, lk, mode, jobs, receiver)
            await lk.set("open")
            await eventually(lambda: complete(redis, jobs), timeout=60, what="all created")
            await eventually(lambda: _ready(api), timeout=20, what="ready again")
            await receiver.wait_for(lambda r: len(announcements(receiver)) == len(jobs), timeout=30)
            records = await job_records(redis, jobs)
            await api.close()
        rooms = await livekit_rooms(emu.url)

    announced = announcements(receiver)
    for record in records:
        room_id = record["room_id"]
        # One LiveKit room, announced once (any repeat would carry the same webhook-id and sid).
        sid = rooms[room_id]["sid"]
        assert record["sid"] == sid and {s for _, s in announced[room_id]} == {sid}, room_id
        assert len(announced[room_id]) == 1, (room_id, announced[room_id])
    assert len(rooms) == len(jobs)
    print(
        f"\nfault: LiveKit silent (accepts, never answers; {lk.accepted} connections held), then "
        f"refusing connections, then back: {len(jobs)} creates accepted "
        f"(sync creates answered 202 after {seen['silent']['waited']:.1f} s and "
        f"{seen['shut']['waited']:.1f} s, ROOMKEEPER_CREATE_WAIT={CREATE_WAIT:g}; "
        f"retrying: {seen['silent']['retrying']!r} / {seen['shut']['retrying']!r}); /readyz 503 "
        f"{seen['silent']['ready']!r} / {seen['shut']['ready']!r}; {len(rooms)} created once "
        f"each, {len(announced)} room_created after it came back"
    )


async def _outage(
    api: Api, redis: Redis, lk: Door, mode: str, jobs: list[str], receiver: Receiver
) -> dict[str, Any]:
    """One kind of outage: readiness, a sync create, a bulk, all retried while it lasts."""
    await lk.set(mode)  # type: ignore[arg-type]
    status, ready = await readyz(api)
    assert status == 503 and "livekit" in ready["problems"], ready
    assert "redis" not in ready["problems"], ready
    started = time.monotonic()
    status, body = await api.post(
        "/auth/room/create", minimal_request(f"lk-{mode}-sync", webhook_url=receiver.at("/hook"))
    )
    waited = time.monotonic() - started
    # The wait runs out: 202 with the job, which goes on (and the reason it is retrying).
    assert status == 202 and body["status"] and body["job_id"], body
    assert waited < CREATE_WAIT + 2 * LIVEKIT_TIMEOUT, waited
    jobs.append(body["job_id"])
    rooms = [
        minimal_request(f"lk-{mode}-{i}", webhook_url=receiver.at("/hook")) for i in range(BULK)
    ]
    status, bulk = await api.post("/auth/room/createBulk", {"rooms": rooms})
    assert status == 202 and all(r["accepted"] for r in bulk["results"]), bulk
    batch = [r["job_id"] for r in bulk["results"]]
    jobs.extend(batch)
    await eventually(lambda: retried(redis, [body["job_id"], *batch]), timeout=30, what="retries")
    return {"waited": waited, "retrying": body.get("retrying", ""), "ready": ready["problems"]}


async def _ready(api: Api) -> bool:
    return (await readyz(api))[0] == 200
