"""Webhook POSTs on kept-alive HTTP/1.1 connections, each connection opened through the SSRF guard.

An attempt is one POST of a small body that is ready to go; of the answer only its status, its
`Retry-After` and its first 4 KiB matter. A general-purpose client builds and tracks much more
per request (cookies, redirects, proxies, tracing, multidict headers, decompression), all of
which the dispatcher had to turn off, and that bookkeeping was the largest part of its CPU per
delivery. Here a request is written in one piece, and llhttp (through httptools, the parser
uvloop's servers use) reads the answer.

The guard sits in front of every connection twice: a name is resolved by `GuardedResolver`,
which drops each address the guard refuses (so a name that resolves only to internal addresses
is refused with the reason), and the exact address a connection is about to be made to is
checked again, so literal IPs never reach a resolver and nothing connects to an address the
guard has not passed just then.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import TracebackType
from typing import cast

import httptools
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from worker.webhooks.netguard import IPNetwork, blocked_reason, literal_ip

RESPONSE_KEEP = 4096  # bytes of an answer kept; the rest is never read
HEAD_LIMIT = 65536  # bytes an answer's status line and headers may take
GUARD = "refused by the SSRF guard"
# An idle connection older than this is closed, not reused: shorter than the shortest idle
# timeout common servers use (Node's 5 s), so a POST is not written just as the receiver closes.
KEEPALIVE_S = 4.0


class BlockedAddress(OSError):
    """The SSRF guard refused the address(es) a webhook would connect to."""


class InvalidTarget(ValueError):
    """A webhook URL no attempt can be made to (its reason is the message)."""


class ConnectFailed(ConnectionError):
    """No connection could be opened to the receiver (the OS's reason is the message)."""


class ClosedEarly(ConnectionError):
    """The receiver closed the connection before its answer was complete."""


class NotHttp(ConnectionError):
    """The receiver's answer could not be read as HTTP/1.1."""


class GuardedResolver(AbstractResolver):
    """Resolves with `inner`, then drops addresses the guard refuses; none left → BlockedAddress."""

    def __init__(
        self, allowed: Sequence[IPNetwork] = (), inner: AbstractResolver | None = None
    ) -> None:
        self._allowed = tuple(allowed)
        # The system resolver (getaddrinfo) by default, whether or not aiodns is installed, so
        # deliveries resolve names the way the host does.
        self._inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve `host`, keeping only addresses a webhook may reach."""
        results = await self._inner.resolve(host, port, family)
        kept = [r for r in results if blocked_reason(r["host"], self._allowed) is None]
        if not kept:
            reasons = sorted({str(blocked_reason(r["host"], self._allowed)) for r in results})
            raise BlockedAddress(f"{GUARD}: {host} resolves only to {'; '.join(reasons)}")
        return kept

    async def close(self) -> None:
        """Close the inner resolver."""
        await self._inner.close()


@dataclass(frozen=True, slots=True)
class Target:
    """Where a webhook URL's POSTs go: the connection's key, and the request line and Host."""

    key: tuple[bool, str, int]
    host: str  # as resolved and connected to: punycode, no brackets
    port: int
    tls: bool
    head: bytes  # `POST <path> HTTP/1.1` and the Host header


@lru_cache(maxsize=4096)
def target(url: str) -> Target:
    """Parse a webhook URL once; raises InvalidTarget saying what is wrong with it."""
    try:
        parsed = yarl.URL(url)
        host, port = parsed.raw_host, parsed.port
        host_header, path = parsed.host_port_subcomponent, parsed.raw_path_qs or "/"
    except (ValueError, TypeError) as exc:
        raise InvalidTarget(f"not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise InvalidTarget(f"the scheme must be http or https, not {parsed.scheme or 'none'}")
    if not host or port is None or host_header is None:
        raise InvalidTarget("the URL names no host")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        # The Authorization header carries the webhook's token; a password would need it too.
        raise InvalidTarget("credentials in the URL cannot be sent; use a token in its path")
    tls = parsed.scheme == "https"
    head = f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\n".encode("ascii")
    return Target((tls, host, port), host, port, tls, head)


def request_bytes(where: Target, headers: Mapping[str, str], body: bytes) -> bytes:
    """The whole request, head and body, as one write; a header with CR or LF is refused."""
    lines = [where.head]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise ValueError(f"header {name!r} would break the request")
        lines.append(f"{name}: {value}\r\n".encode("latin-1"))
    lines.append(b"Content-Length: %d\r\nAccept-Encoding: identity\r\n\r\n" % len(body))
    lines.append(body)
    return b"".join(lines)


@dataclass(frozen=True, slots=True)
class Answer:
    """What a receiver answered: status, `Retry-After` (if any), the first 4 KiB of the body."""

    status: int
    body: bytes
    retry_after: str | None


class _Connection(asyncio.Protocol):
    """One connection to a receiver: sends a request, llhttp reads its answer into a future."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.open = True
        self.reusable = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._body = bytearray()
        self._retry_after: str | None = None
        self._delimited = False  # a Content-Length or chunked answer (else: ends at close)
        self._head_bytes = 0  # received before the headers were complete

    async def exchange(self, request: bytes, deadline: float) -> Answer:
        """Send `request` and wait for its answer until `deadline` (loop time)."""
        if self.transport is None or not self.open:
            raise ClosedEarly("the receiver closed the connection before the request was sent")
        self._reset()
        self.reusable = False
        waiter: asyncio.Future[Answer] = self._loop.create_future()
        self._waiter = waiter
        timer = self._loop.call_at(deadline, self._expire)
        self.transport.write(request)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def fresh(self, now: float) -> bool:
        """Whether this idle connection may carry another POST (`now`: `time.monotonic()`)."""
        return self.open and now - self.idle_since < KEEPALIVE_S

    def close(self) -> None:
        """Close the connection (it is never reused after this)."""
        self.open = False
        if self.transport is not None:
            self.transport.close()

    def _settle(self, result: Answer | BaseException) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if isinstance(result, BaseException):
            waiter.set_exception(result)
        else:
            waiter.set_result(result)

    def _answer(self) -> Answer:
        return Answer(self._status, bytes(self._body), self._retry_after)

    def _expire(self) -> None:
        self.close()
        self._settle(TimeoutError())

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        """An answer that ends at the close is complete now; any other is cut short."""
        self.open = False
        if self._status and not self._delimited:
            self._settle(self._answer())
        else:
            self._settle(ClosedEarly("the receiver closed the connection before answering"))

    def data_received(self, data: bytes) -> None:
        """Feed llhttp; bytes arriving on an idle connection end it."""
        if self._waiter is None:
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.close()
            self._settle(NotHttp(f"the answer is not HTTP/1.1 ({exc})"))
            return
        if not self._status:  # llhttp keeps an unfinished header: bound what it may hold
            self._head_bytes += len(data)
            if self._head_bytes > HEAD_LIMIT:
                self.close()
                self._settle(NotHttp(f"the answer's head is over {HEAD_LIMIT} bytes"))

    # llhttp's callbacks (they must not raise)
    def on_header(self, name: bytes, value: bytes) -> None:
        """Keep `Retry-After`; note whether the answer says where it ends."""
        name = name.lower()
        if name == b"retry-after":
            self._retry_after = value.decode("latin-1")
        elif name in (b"content-length", b"transfer-encoding"):
            self._delimited = True

    def on_headers_complete(self) -> None:
        """The status is known."""
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        """Keep the first RESPONSE_KEEP bytes; past them the answer is done and the rest unread."""
        room = RESPONSE_KEEP - len(self._body)
        self._body += body[:room] if room < len(body) else body
        if len(body) >= room and self._waiter is not None and not self._waiter.done():
            self.close()  # the rest is never read, so the connection cannot carry another
            self._settle(self._answer())

    def on_message_complete(self) -> None:
        """A final answer resolves the exchange; an interim (1xx) one is skipped."""
        if 100 <= self._status < 200:
            self._reset()
            return
        self.reusable = self._parser.should_keep_alive()
        self._settle(self._answer())


class Pool:
    """Kept-alive connections per (scheme, host, port), each opened through the guard."""

    def __init__(
        self,
        allowed: Sequence[IPNetwork] = (),
        *,
        resolver: AbstractResolver | None = None,
        limit: int = 256,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._allowed = tuple(allowed)
        self._resolver = GuardedResolver(self._allowed, resolver)
        self._tls = tls or ssl.create_default_context()
        self._limit = limit
        self._slots = asyncio.Semaphore(limit)  # one connection per POST in flight, at most
        self._idle: dict[tuple[bool, str, int], list[_Connection]] = {}
        self._swept = time.monotonic()

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> Answer:
        """POST `body` to `url` within `timeout` seconds (connecting included)."""
        where = target(url)
        request = request_bytes(where, headers, body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._slots:
            conn = self._take(where.key)
            if conn is None:
                async with asyncio.timeout_at(deadline):
                    conn = await self._open(loop, where)
            try:
                answer = await conn.exchange(request, deadline)
            except BaseException:
                conn.close()
                raise
            if conn.reusable and conn.open:
                self._give_back(where.key, conn)
            else:
                conn.close()
            return answer

    def _take(self, key: tuple[bool, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.fresh(now):
                return conn
            conn.close()
        return None

    def _give_back(self, key: tuple[bool, str, int], conn: _Connection) -> None:
        now = conn.idle_since = time.monotonic()
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self._limit:
            idle.pop(0).close()
        idle.append(conn)
        if now - self._swept > KEEPALIVE_S:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Close connections idle too long, so receivers nobody posts to again are let go."""
        self._swept = now
        for key, idle in list(self._idle.items()):
            kept = []
            for conn in idle:
                if conn.fresh(now):
                    kept.append(conn)
                else:
                    conn.close()
            if kept:
                self._idle[key] = kept
            else:
                del self._idle[key]

    async def _open(self, loop: asyncio.AbstractEventLoop, where: Target) -> _Connection:
        if (ip := literal_ip(where.host)) is not None:
            addresses = [str(ip)]
        else:
            found = await self._resolver.resolve(where.host, where.port, socket.AF_UNSPEC)
            addresses = list(dict.fromkeys(r["host"] for r in found))
        failure: OSError | None = None
        for address in addresses:
            # Checked at the moment of connecting, whatever the resolver said before.
            if (reason := blocked_reason(address, self._allowed)) is not None:
                raise BlockedAddress(f"{GUARD}: {reason}")
            try:
                transport, conn = await loop.create_connection(
                    lambda: _Connection(loop),
                    address,
                    where.port,
                    ssl=self._tls if where.tls else None,
                    server_hostname=where.host.rstrip(".") if where.tls else None,
                )
            except ssl.SSLError:
                raise  # the receiver was reached; its certificate is the answer
            except OSError as exc:
                failure = exc
                continue
            # uvloop may call connection_made after create_connection has returned.
            conn.transport = transport
            return conn
        raise ConnectFailed(str(failure or "no address to connect to"))

    def idle(self) -> int:
        """How many kept connections are open and waiting for a POST."""
        return sum(c.open for idle in self._idle.values() for c in idle)

    async def close(self) -> None:
        """Close every idle connection and the resolver."""
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        await self._resolver.close()

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
