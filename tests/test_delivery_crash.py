"""At-least-once across a crash (README, Webhooks): a `roomkeeper worker` SIGKILLed while an attempt is
in flight loses nothing; the next worker sends the same event again, with the same `webhook-id`."""

from __future__ import annotations

import signal
import time

import pytest
from redis.asyncio import Redis

from emulator.server import Emulator
from tests.support.api import Api, minimal_request
from tests.support.procs import api_process, roomkeeper_env, worker_process
from tests.support.servers import Receiver, RedisServer

pytestmark = pytest.mark.slow  # real processes or injected faults


async def test_a_worker_killed_mid_attempt_leaves_the_event_to_the_next_worker(
    redis_server: RedisServer, emulator: Emulator, redis: Redis, receiver: Receiver
) -> None:
    # A short attempt timeout keeps the lease short: a dead worker's queue falls due in ~6 s.
    env = roomkeeper_env(redis_server.url, emulator.url, ROOMKEEPER_WEBHOOK_TIMEOUT="1")
    receiver.hang.add("/hook")  # the first attempt never gets an answer
    async with api_process(env) as (url, _):
        api = Api(url)
        try:
            async with worker_process(env, "doomed-worker") as doomed:
                await api.create(minimal_request("crash", webhook_url=receiver.at("/hook")))
                await receiver.wait_for(lambda r: len(r) == 1)
                doomed.signal(signal.SIGKILL)
                assert doomed.wait(10) == -signal.SIGKILL
            receiver.hang.discard("/hook")

            async with worker_process(env, "next-worker"):
                started = time.monotonic()
                await receiver.wait_for(lambda r: len(r) == 2, timeout=30)
                waited = time.monotonic() - started

            status, body = await api.post("/auth/webhook/deliveries", {"room_id": "crash"})
        finally:
            await api.close()

    first, second = receiver.received
    assert waited < 30
    assert first.json["event"] == second.json["event"] == "room_created"
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == first.json["id"]
    assert first.body == second.body
    assert status == 200, body
    (delivery,) = body["deliveries"]
    assert delivery["state"] == "delivered"
    interrupted, delivered = delivery["attempts"]
    assert interrupted["error"].startswith("interrupted: the worker stopped")
    assert delivered["status"] == 200
