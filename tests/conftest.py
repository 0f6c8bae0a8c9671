"""Fixtures: a real redis-server per session, the LiveKit emulator, a webhook receiver, the stack.

Nothing here mocks roomkeeper's code: the API is served over real HTTP, the worker is a real arq
Worker with its consumers, LiveKit is the emulator reached by URL.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis

from emulator.server import Emulator
from handlers.app import create_app
from tests.support.api import (
    API_KEY,
    API_SECRET,
    LK_KEY,
    LK_SECRET,
    WEBHOOK_SECRET,
    Api,
)
from tests.support.servers import Receiver, RedisServer, free_port, run_receiver
from worker.arqueue import ResilientWorker, Worker
from worker.logs import configure_logging
from worker.main import stop_worker, worker_settings
from worker.settings import Settings


@pytest.fixture(scope="session", autouse=True)
def _logging() -> None:
    """The service's own logging set-up (JSON lines, secrets redacted)."""
    configure_logging("info", "json")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server for the session (fails loudly when it cannot start)."""
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A clean database for each test."""
    client = Redis.from_url(redis_server.url, decode_responses=True)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A recording webhook receiver."""
    async with run_receiver() as rec:
        yield rec


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """The LiveKit emulator on a free port (its webhooks are pointed at the API by `stack`)."""
    async with Emulator(LK_KEY, LK_SECRET, tick_interval=0.1) as emu:
        yield emu


def make_settings(redis_url: str, livekit_url: str, **overrides: Any) -> Settings:
    """Settings for tests: local services, fast schedules, loopback webhooks allowed."""
    values: dict[str, Any] = {
        "livekit_url": livekit_url,
        "livekit_api_key": LK_KEY,
        "livekit_api_secret": LK_SECRET,
        "livekit_timeout": 2.0,
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "redis_url": redis_url,
        "webhook_secret": WEBHOOK_SECRET,
        "webhook_allowed_cidrs": "127.0.0.0/8",
        "webhook_retry_schedule": "0,0.2,0.2,0.2",
        "webhook_timeout": 2.0,
        "create_retry_schedule": "0.1,0.2,0.3",
        "create_wait": 5.0,
        "reconcile_interval": 60.0,
        "shutdown_grace": 2.0,
        "log_format": "json",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(redis_server: RedisServer, emulator: Emulator) -> Settings:
    """Default test settings against this test's Redis and emulator."""
    return make_settings(redis_server.url, emulator.url)


@dataclass
class Stack:
    """A running API (real HTTP) and worker (real arq Worker) against Redis and the emulator."""

    url: str
    api: Api
    settings: Settings
    emulator: Emulator
    http: aiohttp.ClientSession

    async def lk(self, path: str, method: str = "GET", payload: Any = None) -> Any:
        """Call the emulator's control API (`path` under `/_emulator/`)."""
        async with self.http.request(
            method, f"{self.emulator.url}/_emulator/{path}", json=payload
        ) as resp:
            body = await resp.json()
            assert resp.status == 200, (path, resp.status, body)
            return body


@contextlib.asynccontextmanager
async def run_api(settings: Settings) -> AsyncIterator[str]:
    """Serve the API on a free port; yields its base URL."""
    runner = web.AppRunner(create_app(settings), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def run_worker(settings: Settings) -> AsyncIterator[Worker]:
    """Run an arq worker (with its consumers) in this loop."""
    worker = ResilientWorker(**worker_settings(settings), handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    try:
        yield worker
    finally:
        await stop_worker(worker, task, settings.shutdown_grace)  # what `roomkeeper worker` does


@contextlib.asynccontextmanager
async def run_stack(settings: Settings, emulator: Emulator) -> AsyncIterator[Stack]:
    """API + worker, with the emulator's webhooks pointed at the API's `/webhook`."""
    async with run_api(settings) as url, run_worker(settings), aiohttp.ClientSession() as http:
        api = Api(url)
        stack = Stack(url, api, settings, emulator, http)
        await stack.lk("config", "POST", {"webhook_urls": [f"{url}/webhook"]})
        try:
            yield stack
        finally:
            await api.close()


@pytest.fixture
async def stack(settings: Settings, emulator: Emulator, redis: Redis) -> AsyncIterator[Stack]:
    """The default running stack."""
    async with run_stack(settings, emulator) as s:
        yield s
