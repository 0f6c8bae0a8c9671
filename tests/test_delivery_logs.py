"""The dispatcher's log lines (README, Webhooks): a real `roomkeeper worker` logs every attempt of
a room's events, in order, with what came back, and every delivery that died, with why; the URL
as logged never carries its query (webhook URLs often hold tokens)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.support.api import eventually
from tests.support.delivery import emit, settled
from tests.support.procs import roomkeeper_env, worker_process
from tests.support.servers import Receiver, RedisServer
from tests.support.stack import make_settings
from worker.webhooks.heads import GONE_EARLIER, GONE_REASON

pytestmark = pytest.mark.slow  # a real worker process


def lines(output: str, event: str) -> list[dict[str, Any]]:
    """The worker's JSON log lines of one `event`, in the order written."""
    found = []
    for line in output.splitlines():
        if line.startswith("{") and json.loads(line).get("event") == event:
            found.append(json.loads(line))
    return found


async def test_each_attempt_and_each_death_is_logged_in_order_without_the_urls_query(
    redis_server: RedisServer, redis: Redis, receiver: Receiver
) -> None:
    # Two answered, then 410 Gone: the third is dead after its attempt, the fourth unsent.
    receiver.script["/hook"] = [200, 200, 410]
    env = roomkeeper_env(
        redis_server.url, "http://127.0.0.1:9", ROOMKEEPER_RECONCILE_INTERVAL="3600"
    )
    url = receiver.at("/hook") + "?token=do-not-log-me"
    settings = make_settings(redis_server.url, "http://127.0.0.1:9")
    async with worker_process(env, "logging-worker") as worker:
        emitted = await emit(redis, settings, "logged", url, count=4)
        ids = [delivery for _, (delivery,) in emitted]
        await eventually(lambda: settled(redis, ids), what="all four settled")

        def logged() -> bool:
            output = worker.output()
            return len(lines(output, "webhook attempt")) == 3 and (
                len(lines(output, "webhook dead")) == 2
            )

        await eventually(logged, what="three attempts and two deaths logged")
        output = worker.output()

    attempts = lines(output, "webhook attempt")
    assert [a["delivery_id"] for a in attempts] == ids[:3]
    assert [(a["status"], a["outcome"], a["attempt"]) for a in attempts] == [
        (200, "Delivered", 1),
        (200, "Delivered", 1),
        (410, "Gone", 1),
    ]
    assert {a["room_id"] for a in attempts} == {"logged"}
    assert [a["event_id"] for a in attempts] == [event_id for event_id, _ in emitted[:3]]
    dead = lines(output, "webhook dead")
    assert [(d["delivery_id"], d["reason"]) for d in dead] == [
        (ids[2], GONE_REASON),
        (ids[3], GONE_EARLIER),
    ]
    for line in attempts + dead:
        assert line["url"] == receiver.at("/hook")
    assert "do-not-log-me" not in output
