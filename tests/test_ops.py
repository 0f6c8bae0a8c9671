"""Operational routes and probes: health, readiness naming what is down, metrics, worker check."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import aiohttp
import pytest
from redis.asyncio import Redis

from emulator.server import Emulator
from tests.support.api import eventually, minimal_request
from tests.support.procs import roomkeeper_env, worker_process
from tests.support.servers import RedisServer, free_port
from tests.support.stack import Stack, make_settings, run_api


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


async def test_healthz_and_readyz_answer_200_when_everything_is_up(stack: Stack) -> None:
    assert (await get(f"{stack.url}/healthz"))[0] == 200
    status, body = await get(f"{stack.url}/readyz")
    assert status == 200 and '"ready"' in body


async def test_readyz_names_livekit_when_it_is_unreachable(
    redis_server: RedisServer, redis: Redis
) -> None:
    settings = make_settings(redis_server.url, f"http://127.0.0.1:{free_port()}")
    async with run_api(settings) as url:
        status, body = await get(f"{url}/readyz")
        health, _ = await get(f"{url}/healthz")

    assert status == 503 and "livekit" in body and "redis" not in body
    assert health == 200  # alive, just not ready


@pytest.mark.slow
async def test_readyz_names_redis_when_it_is_down(emulator: Emulator) -> None:
    server = RedisServer()
    server.start()
    settings = make_settings(server.url, emulator.url)
    try:
        async with run_api(settings) as url:
            server.stop()
            status, body = await get(f"{url}/readyz")
    finally:
        server.cleanup()

    assert status == 503 and "redis" in body and "livekit" not in body


async def test_metrics_count_requests_jobs_queue_and_deliveries(stack: Stack, receiver) -> None:
    await stack.api.create(minimal_request("measured", webhook_url=receiver.at("/hook")))
    await stack.api.post("/auth/room/create", {"room_id": "bad"})
    await receiver.wait_for(lambda r: len(r) >= 1)

    status, text = await get(f"{stack.url}/metrics")

    assert status == 200
    assert (
        'roomkeeper_requests_total{http_status="200",route="/auth/room/create",status_code="SUCCESS"}'
        in text
    )
    assert 'status_code="INVALID_PARAMETERS"' in text
    assert "roomkeeper_request_seconds_bucket" in text
    assert 'roomkeeper_jobs_total{function="create_rooms",outcome="ok"}' in text
    assert "roomkeeper_create_queue_depth" in text
    assert "roomkeeper_webhook_deliveries_in_state" in text


def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "roomkeeper", "worker", "--check"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


@pytest.mark.slow
async def test_worker_check_passes_while_a_worker_runs_and_fails_without_one(
    redis_server: RedisServer, emulator: Emulator, redis: Redis
) -> None:
    health = os.path.join(tempfile.mkdtemp(), "worker.health")
    env = roomkeeper_env(redis_server.url, emulator.url, ROOMKEEPER_WORKER_HEALTH_FILE=health)

    assert check(env).returncode == 1  # nothing has ever run here
    async with worker_process(env):
        await eventually(lambda: _exists(health), what="first heartbeat")
        ok = check(env)
    assert ok.returncode == 0, ok.stdout + ok.stderr


async def _exists(path: str) -> bool:
    return os.path.exists(path)
