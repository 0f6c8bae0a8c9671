"""The stack under test, in this process: the API over real HTTP and a real arq worker with its
consumers, against a real Redis and the LiveKit emulator (reached by URL). Fixtures in
`tests/conftest.py` build it; tests that need their own settings call `run_stack` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

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
from tests.support.servers import free_port
from worker.arqueue import ResilientWorker, Worker
from worker.main import stop_worker, worker_settings
from worker.settings import Settings


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
