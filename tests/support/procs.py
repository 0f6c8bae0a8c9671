"""roomkeeper as real processes (`roomkeeper api`, `roomkeeper worker`), configured by env only."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Iterator

import aiohttp

from tests.support.api import API_KEY, API_SECRET, LK_KEY, LK_SECRET, WEBHOOK_SECRET, eventually
from tests.support.servers import Process, free_port, roomkeeper_cmd, wait_for_port


def roomkeeper_env(redis_url: str, livekit_url: str, **extra: str) -> dict[str, str]:
    """The environment of a test deployment (the settings of the README's Configuration table)."""
    env = {
        "LIVEKIT_URL": livekit_url,
        "LIVEKIT_API_KEY": LK_KEY,
        "LIVEKIT_API_SECRET": LK_SECRET,
        "ROOMKEEPER_API_KEY": API_KEY,
        "ROOMKEEPER_API_SECRET": API_SECRET,
        "ROOMKEEPER_REDIS_URL": redis_url,
        "ROOMKEEPER_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "ROOMKEEPER_WEBHOOK_ALLOWED_CIDRS": "127.0.0.0/8",
        "ROOMKEEPER_WEBHOOK_RETRY_SCHEDULE": "0,0.2,0.5,1",
        "ROOMKEEPER_WEBHOOK_TIMEOUT": "2",
        "ROOMKEEPER_CREATE_RETRY_SCHEDULE": "0.1,0.2,0.5,1",
        "ROOMKEEPER_LOG_FORMAT": "json",
        "ROOMKEEPER_SHUTDOWN_GRACE": "3",
    }
    env.update(extra)
    return env


@contextlib.contextmanager
def emulator_process(*webhook_urls: str) -> Iterator[str]:
    """The LiveKit emulator as its own process, listening before the block starts; yields its URL.

    For tests that time what arrives at LiveKit: an emulator in the test's own event loop stamps
    calls late, and bunched, whenever that loop is busy.
    """
    port = free_port()
    args = [sys.executable, "-m", "emulator", "--port", str(port), "--api-key", LK_KEY,
            "--api-secret", LK_SECRET]  # fmt: skip
    for url in webhook_urls:
        args += ["--webhook-url", url]
    proc = Process(args, {}, "emulator").start()
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


async def wait_healthy(url: str, proc: Process, timeout: float = 20.0) -> None:
    """Poll `GET /healthz` until 200; fail with the process output if it never comes."""
    async with aiohttp.ClientSession() as session:

        async def healthy() -> bool:
            assert proc.proc is not None
            if proc.proc.poll() is not None:
                raise AssertionError(f"{proc.name} exited:\n{proc.output()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{url}/healthz") as resp:
                    return resp.status == 200
            return False

        await eventually(
            healthy, timeout, f"{proc.name} healthy", interval=0.05, describe=proc.output
        )


@contextlib.asynccontextmanager
async def api_process(
    env: dict[str, str], port: int | None = None
) -> AsyncIterator[tuple[str, Process]]:
    """`roomkeeper api --host 127.0.0.1 --port P`, healthy before the block starts."""
    port = port or free_port()
    proc = Process(roomkeeper_cmd("api", "--host", "127.0.0.1", "--port", str(port)), env, "api")
    proc.start()
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, proc)
        yield url, proc
    finally:
        proc.stop()


@contextlib.asynccontextmanager
async def worker_process(env: dict[str, str], name: str = "worker") -> AsyncIterator[Process]:
    """`roomkeeper worker`, started (it has no port; readiness is its first log line)."""
    proc = Process(roomkeeper_cmd("worker"), env, name)
    proc.start()

    def started() -> bool:
        assert proc.proc is not None
        if proc.proc.poll() is not None:
            raise AssertionError(f"{name} exited:\n{proc.output()}")
        return "worker started" in proc.output()

    try:
        await eventually(started, 20, f"{name} started", interval=0.05, describe=proc.output)
        yield proc
    finally:
        proc.stop()
