"""An API process SIGKILLed in the middle of a large createBulk leaves no room stuck `queued`.

The two halves of a submit are claiming a room and writing the arq job that creates it. When they
were two round trips, a kill between them left claimed rooms that no job would ever create (and
whose `room_id` no later create could take, since the claim said "pending"). Now each claim writes
its job in the same script (`worker/rooms/submit.py`), so whatever part of the call the kill let
through, every room it claimed gets created.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from emulator.server import Emulator
from tests.support.api import LK_KEY, LK_SECRET, Api, eventually, livekit_rooms, minimal_request
from tests.support.procs import api_process, roomkeeper_env, worker_process
from tests.support.servers import RedisServer
from worker import keys

pytestmark = pytest.mark.slow

ROOMS, ROUNDS = 1000, 3


def room_ids(round_no: int) -> list[str]:
    return [f"crash{round_no}-{i}" for i in range(ROOMS)]


async def room_states(redis: Redis, ids: list[str]) -> dict[str, str | None]:
    async with redis.pipeline(transaction=False) as pipe:
        for room_id in ids:
            pipe.hget(keys.room(room_id), "state")
        return dict(zip(ids, await pipe.execute(), strict=True))


async def test_an_api_killed_during_a_large_create_bulk_leaves_no_room_stuck_queued(
    redis_server: RedisServer, redis: Redis
) -> None:
    async with Emulator(LK_KEY, LK_SECRET, tick_interval=3600) as emu:
        env = roomkeeper_env(redis_server.url, emu.url)
        cut_off = 0
        for round_no in range(ROUNDS):
            async with api_process(env) as (url, proc):
                api = Api(url)
                body = {"rooms": [minimal_request(r) for r in room_ids(round_no)]}
                call = asyncio.create_task(api.post("/auth/room/createBulk", body))

                async def claims_landed(round_no: int = round_no) -> bool:
                    return bool(await redis.exists(keys.room(f"crash{round_no}-0")))

                # The moment the first claims are in Redis, the call is between its two halves.
                await eventually(claims_landed, timeout=30, what="first claims", interval=0)
                proc.signal(signal.SIGKILL)
                proc.wait(10)
                try:
                    answer: Any = await call
                except aiohttp.ClientError:
                    cut_off += 1  # the kill came before the answer, as intended
                else:
                    assert answer[0] == 202, answer
                await api.close()
        assert cut_off, "no createBulk was cut short by the kill; the test proved nothing"

        every_id = [r for n in range(ROUNDS) for r in room_ids(n)]
        claimed = [r for r, s in (await room_states(redis, every_id)).items() if s]
        assert claimed

        async def none_pending() -> bool:
            states = await room_states(redis, claimed)
            return all(s in ("created", "active") for s in states.values())

        async with worker_process(env):
            await eventually(none_pending, timeout=90, what="every claimed room created")
        in_livekit = await livekit_rooms(emu.url)
        assert set(claimed) <= set(in_livekit)
        print(
            f"\nfault: API SIGKILLed {ROUNDS} times in the middle of a {ROOMS}-room createBulk "
            f"({cut_off} calls cut short); {len(claimed)} rooms claimed, {len(claimed)} created, "
            "0 left queued"
        )
