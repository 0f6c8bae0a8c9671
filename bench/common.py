"""Shared pieces for the benchmarks: the real stack as processes, and percentile arithmetic."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.api import LK_KEY, LK_SECRET
from tests.support.procs import roomkeeper_env
from tests.support.servers import Process, RedisServer, free_port, wait_for_port


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def helper_server(module: str, flag: str, name: str) -> tuple[Process, int]:
    """A bench module run again as a helper server (receiver, baseline) on a free port, in its
    own process so it never shares a CPU loop with what it measures; up before this returns."""
    port = free_port()
    proc = Process([sys.executable, "-m", module, flag, str(port)], {}, name).start()
    try:
        wait_for_port(port)
    except BaseException:
        proc.stop()
        raise
    return proc, port


def serve_event_counter(port: int) -> None:
    """A webhook receiver process (the integrator's end): answers 200 at once and counts what
    arrives per event name (`GET /count`; read with `event_counts`)."""
    counts: Counter[str] = Counter()

    async def hook(request: web.Request) -> web.Response:
        counts[json.loads(await request.read())["event"]] += 1
        return web.Response(text="ok")

    async def count(_: web.Request) -> web.Response:
        return web.json_response(counts)

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/count", count)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


async def event_counts(
    receiver_url: str, http: aiohttp.ClientSession | None = None
) -> Counter[str]:
    """What a `serve_event_counter` receiver has counted so far, per event (on `http`, for a
    caller that polls it often)."""
    async with contextlib.AsyncExitStack() as stack:
        session = http or await stack.enter_async_context(aiohttp.ClientSession())
        async with session.get(f"{receiver_url}/count") as resp:
            return Counter(await resp.json())


def cpu_s(proc: Any) -> float:
    """CPU seconds (user + system) a process (`Process` or Popen) has used so far: what a
    per-unit CPU figure divides, robust to a machine shared with other work."""
    popen = getattr(proc, "proc", proc)
    if popen is None:
        return 0.0
    fields = Path(f"/proc/{popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Procs(list[Process]):
    """The worker processes of a `roomkeeper` stack, with its API process as `api`."""

    api: Process


def rss_mib(pid: int) -> float:
    """Resident set size of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Emulator:
    """The LiveKit emulator as its own process (so it never shares a CPU loop with us)."""

    def __init__(self, *, tick: float, webhook_urls: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            sys.executable, "-m", "emulator", "--port", str(self.port),
            "--api-key", LK_KEY, "--api-secret", LK_SECRET, "--tick-interval", str(tick),
        ]  # fmt: skip
        for url in webhook_urls:
            args += ["--webhook-url", url]
        self.proc = Process(args, {}, "emulator")

    def start(self) -> Emulator:
        """Start and wait for the port."""
        self.proc.start()
        wait_for_port(self.port)
        return self

    async def get(self, path: str) -> Any:
        """GET from the control API."""
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{self.url}/_emulator/{path}") as resp,
        ):
            return await resp.json()

    async def post(self, path: str, payload: Any) -> Any:
        """POST to the control API."""
        async with (
            aiohttp.ClientSession() as s,
            s.post(f"{self.url}/_emulator/{path}", json=payload) as resp,
        ):
            return await resp.json()


@contextlib.asynccontextmanager
async def roomkeeper(
    redis: RedisServer,
    livekit_url: str,
    *,
    workers: int = 1,
    api_port: int | None = None,
    **env: str,
) -> AsyncIterator[tuple[str, Procs]]:
    """`roomkeeper api` + N `roomkeeper worker` processes; yields (API URL, workers), the API
    process as the workers' `.api`."""
    port = api_port or free_port()
    # One local receiver takes every event: the per-host cap would be what is measured.
    env = {"ROOMKEEPER_WEBHOOK_HOST_RPS": "0", **env}
    environment = roomkeeper_env(redis.url, livekit_url, ROOMKEEPER_LOG_LEVEL="warning", **env)
    api = Process(
        [sys.executable, "-m", "roomkeeper", "api", "--port", str(port)], environment, "api"
    ).start()
    procs = Procs(
        Process([sys.executable, "-m", "roomkeeper", "worker"], environment, f"worker{i}").start()
        for i in range(workers)
    )
    procs.api = api
    try:
        wait_for_port(port, 30)
        yield f"http://127.0.0.1:{port}", procs
    finally:
        for proc in [api, *procs]:
            proc.stop()


async def wait_until(check: Any, timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll an async check until truthy; raise with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(every)
    raise TimeoutError(f"{what}: not reached in {timeout:.0f} s")


def report(title: str, rows: list[tuple[str, str]]) -> None:
    """Print a JSON line for machines, then a small aligned table whose `ratio` rows come last,
    so every benchmark's last line is its ratio."""
    print(json.dumps({"bench": title, **dict(rows)}))
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}")
    ordered = [r for r in rows if not r[0].startswith("ratio")]
    ordered += [r for r in rows if r[0].startswith("ratio")]
    for key, value in ordered:
        print(f"  {key.ljust(width)}  {value}")
