"""Fixtures: a real redis-server per session, the LiveKit emulator, a webhook receiver, the stack.

Nothing here mocks roomkeeper's code: the API is served over real HTTP, the worker is a real arq
Worker with its consumers, LiveKit is the emulator reached by URL. The code behind them is in
`tests/support/` (servers, the stack, processes, the API client, the seed request, `eventually`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from emulator.server import Emulator
from tests.support.api import LK_KEY, LK_SECRET, close_open_apis
from tests.support.servers import Receiver, RedisServer, run_receiver
from tests.support.stack import Stack, make_settings, run_stack
from worker.logs import configure_logging
from worker.settings import Settings

# Tests that saturate both cores on their own (bulks of thousands of rooms, several roomkeeper
# processes, injected faults) or that count time against a rate: under `pytest -n 2 --dist
# loadgroup` (`make test`) they run one after another on one worker while the other worker
# takes the rest, so no two of them compete for the CPU.
HEAVY = {
    "test_bulk_throughput.py",
    "test_cli_create_rooms.py",
    "test_failover.py",
    "test_faults.py",
    "test_faults_api_kill.py",
    "test_faults_livekit.py",
    "test_faults_redis_full.py",
    "test_sdk_e2e.py",
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the HEAVY modules' tests in one xdist group (before xdist reads the groups)."""
    for item in items:
        if item.path.name in HEAVY:
            item.add_marker(pytest.mark.xdist_group("heavy"))


@pytest.fixture(scope="session", autouse=True)
def _logging() -> None:
    """The service's own logging set-up (JSON lines, secrets redacted)."""
    configure_logging("info", "json")


@pytest.fixture(autouse=True)
async def _close_apis() -> AsyncIterator[None]:
    """A test that fails before `api.close()` leaves no session to warn about in the next one."""
    yield
    await close_open_apis()


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


@pytest.fixture
def settings(redis_server: RedisServer, emulator: Emulator) -> Settings:
    """Default test settings against this test's Redis and emulator."""
    return make_settings(redis_server.url, emulator.url)


@pytest.fixture
async def stack(settings: Settings, emulator: Emulator, redis: Redis) -> AsyncIterator[Stack]:
    """The default running stack."""
    async with run_stack(settings, emulator) as s:
        yield s
