"""Hostile webhook receivers, each a real server on 127.0.0.1, and the certificates they need.

- `slowloris`: answers its headers, then one body byte a second, forever;
- `huge_answer`: a 200 with a 50 MB body, sent as fast as the socket takes it;
- `reset_mid_answer`: a 200's headers and part of its body, then a TCP reset;
- `never_reads`: accepts connections and neither reads nor answers;
- `tls_receiver`: HTTPS with a given certificate (`make_certs`: a test CA, a valid and an expired
  leaf signed by it, and a self-signed leaf), answering 200 like a good receiver.
Each records the connections it got, so a test can tell an attempt was made.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from tests.support.servers import Receiver

HUGE_BYTES = 50 * 1024 * 1024
CHUNK = 1024 * 1024


@dataclass
class Hostile:
    """A raw TCP receiver: its URL and how many connections it accepted."""

    url: str = ""
    connections: int = 0
    sent: int = 0  # body bytes written, all connections together
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Hostile], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> None:
    """Read a request's head and its Content-Length body (so the client sees it was taken)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    await reader.readexactly(length)


async def _slowloris(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Hostile
) -> None:
    await _read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n")
    while True:
        writer.write(b".")
        await writer.drain()
        state.sent += 1
        await asyncio.sleep(1)


async def _huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Hostile) -> None:
    await _read_request(reader)
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        + f"Content-Length: {HUGE_BYTES}\r\n\r\n".encode()
    )
    chunk = b"x" * CHUNK
    for _ in range(HUGE_BYTES // CHUNK):
        writer.write(chunk)
        await writer.drain()
        state.sent += CHUNK


async def _reset(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Hostile
) -> None:
    await _read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\npart")
    await writer.drain()
    state.sent += 4
    sock = writer.get_extra_info("socket")
    # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _never_reads(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Hostile
) -> None:
    await asyncio.sleep(3600)


BEHAVIOURS: dict[str, Behaviour] = {
    "slowloris": _slowloris,
    "huge_answer": _huge,
    "reset_mid_answer": _reset,
    "never_reads": _never_reads,
}


@contextlib.asynccontextmanager
async def hostile_receiver(kind: str) -> AsyncIterator[Hostile]:
    """Serve one of `BEHAVIOURS` on a free 127.0.0.1 port until the block exits."""
    behaviour = BEHAVIOURS[kind]
    state = Hostile()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        task = asyncio.current_task()
        assert task is not None
        state.tasks.add(task)
        try:
            await behaviour(reader, writer, state)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client gave up: exactly what these receivers provoke
        except asyncio.CancelledError:
            pass  # the server is closing; asyncio would log a cancelled callback as an error
        finally:
            state.tasks.discard(task)
            writer.transport.abort()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield state
    finally:
        server.close()
        for task in list(state.tasks):
            task.cancel()
        await asyncio.gather(*state.tasks, return_exceptions=True)
        await server.wait_closed()


@dataclass(frozen=True)
class Certs:
    """PEM files: the CA to trust, and leaves for 127.0.0.1 (valid, expired, self-signed)."""

    ca: Path
    valid: tuple[Path, Path]
    expired: tuple[Path, Path]
    self_signed: tuple[Path, Path]


def make_certs(directory: Path) -> Certs:
    """Make the certificates with `openssl` (a test that cannot make them fails)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is needed to make test certificates: apt-get install openssl")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=rk-test-ca",
        "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def leaf(name: str, days: str) -> tuple[Path, Path]:
        cert, key, csr = (directory / f"{name}.{s}" for s in ("pem", "key", "csr"))
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(key), "-out", str(csr))  # fmt: skip
        # `-days -1` ends the certificate's validity a day before it starts: expired.
        run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", days, "-extfile", str(ext), "-out", str(cert))  # fmt: skip
        return cert, key

    own_cert, own_key = directory / "self.pem", directory / "self.key"
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1",
        "-keyout", str(own_key), "-out", str(own_cert))  # fmt: skip
    return Certs(ca, leaf("valid", "2"), leaf("expired", "-1"), (own_cert, own_key))


@contextlib.asynccontextmanager
async def tls_receiver(cert: tuple[Path, Path]) -> AsyncIterator[tuple[str, Receiver]]:
    """A recording receiver over HTTPS with `cert`; yields its `https://` URL and the Receiver."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*cert)
    receiver = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    receiver.url = f"https://127.0.0.1:{port}"
    try:
        yield f"{receiver.url}/hook", receiver
    finally:
        await runner.cleanup()
