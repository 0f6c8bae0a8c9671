"""Real servers for tests: redis-server on a free port, a recording webhook receiver, processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Block until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


class RedisServer:
    """A private `redis-server` process; `restart()` keeps its data dir (and AOF, if on)."""

    def __init__(self, *, appendonly: bool = False, appendfsync: str = "always") -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed: run `make test` (it installs it with apt-get)"
            )
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="roomkeeper-redis-")
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis:// URL of db 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self.dir,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        self._wait_loaded()

    def _wait_loaded(self, timeout: float = 30.0) -> None:
        """Block until PING answers PONG (a restarted server says LOADING while it reads its AOF)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", self.port), 1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(64).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        raise TimeoutError(f"redis-server on {self.port} still loading after {timeout} s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (SIGKILL for a crash)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        """Stop and start on the same port and data dir."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop and remove the data dir."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


@dataclass
class Receiver:
    """A recording webhook receiver; `script[path]` lists statuses to answer in turn, then 200."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    script: dict[str, list[int | tuple[int, dict[str, str]] | str]] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)

    def at(self, path: str) -> str:
        """The URL of one of the receiver's paths."""
        return f"{self.url}{path}"

    def events(self, path: str | None = None) -> list[dict[str, Any]]:
        """Bodies received (on `path`, or all), oldest first."""
        return [r.json for r in self.received if path is None or r.path == path]

    async def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0
    ) -> list[Received]:
        """Poll until `predicate(received)` holds; fail loudly with what arrived otherwise."""
        from tests.support.api import eventually

        def got() -> list[tuple[str, Any]]:
            return [
                (r.path, r.json.get("event") if r.body[:1] == b"{" else r.body[:60])
                for r in self.received
            ]

        await eventually(
            lambda: predicate(self.received), timeout, "receiver condition", describe=got
        )
        return self.received

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Record, then answer as scripted."""
        body = await request.read()
        self.received.append(Received(request.path, dict(request.headers), body, time.time()))
        if request.path in self.hang:
            await asyncio.sleep(3600)
        steps = self.script.get(request.path)
        if steps:
            step = steps.pop(0)
            if isinstance(step, tuple):
                return web.Response(status=step[0], headers=step[1], text="scripted")
            if isinstance(step, str):  # a redirect target
                return web.Response(status=308, headers={"Location": step})
            return web.Response(status=step, text=f"scripted {step}")
        return web.Response(text="ok")


@contextlib.asynccontextmanager
async def run_receiver(
    receiver: Receiver | None = None, port: int | None = None
) -> AsyncIterator[Receiver]:
    """Serve a Receiver (new, or one brought back) on a port (free, or the one given)."""
    receiver = receiver or Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    port = port or free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    receiver.url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


class Process:
    """A `roomkeeper` (or any) subprocess with its output kept in a file for failure messages."""

    def __init__(self, args: list[str], env: dict[str, str], name: str) -> None:
        self.args = args
        self.env = env
        self.name = name
        self.log = Path(tempfile.mkstemp(prefix=f"roomkeeper-{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        """Start it."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        return self

    def signal(self, sig: int) -> None:
        """Send a signal."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for exit; returns the code."""
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Terminate (then kill) if running."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def output(self) -> str:
        """What it printed so far."""
        return self.log.read_text(errors="replace")


def roomkeeper_cmd(*args: str) -> list[str]:
    """The console script, run with this interpreter."""
    return [sys.executable, "-m", "roomkeeper.cli", *args]
