"""One webhook attempt over HTTP, the SSRF guard under it, and what the answer means.

The guard sits in the connector twice: the resolver drops every address the guard refuses (so
a name that resolves to an internal address is refused with a clear reason, and DNS rebinding
cannot slip one in after a check), and the socket factory checks the exact address each socket
is about to connect to (literal IPs never reach a resolver). Nothing here knows about Redis or
arq; `decide()` turns what an attempt saw into what the dispatcher does next.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import random
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from worker.webhooks.netguard import IPNetwork, blocked_reason

RESPONSE_KEEP = 4096
GUARD = "refused by the SSRF guard"


class BlockedAddress(OSError):
    """The SSRF guard refused the address(es) a webhook would connect to."""


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


def guarded_socket_factory(
    allowed: Sequence[IPNetwork] = (),
) -> Callable[[AddrInfoType], socket.socket]:
    """A socket factory that refuses to create a socket for an address the guard blocks."""
    allowed = tuple(allowed)

    def factory(addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        if (reason := blocked_reason(str(sockaddr[0]), allowed)) is not None:
            raise BlockedAddress(f"{GUARD}: {reason}")
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


def make_session(
    allowed: Sequence[IPNetwork] = (),
    *,
    resolver: AbstractResolver | None = None,
    limit: int = 256,
) -> aiohttp.ClientSession:
    """The session every webhook attempt uses: guarded, TLS verified, no env proxies or cookies."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(allowed, resolver),
        socket_factory=guarded_socket_factory(allowed),
        ssl=ssl.create_default_context(),
        # One connection per running queue at most; no per-host cap, because a request waiting
        # for a pooled connection would spend its attempt timeout without being sent.
        limit=limit,
        limit_per_host=0,
    )
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,  # a proxy from the environment would bypass the guard
        cookie_jar=aiohttp.DummyCookieJar(),  # one receiver's cookies must not reach the next
        auto_decompress=False,  # we keep 4 KiB of the answer; never inflate a compressed bomb
    )


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt saw. `permanent` = no retry can change it (guard refusal, bad URL)."""

    status: int | None
    error: str | None
    duration_ms: float
    response: str
    retry_after: float | None = None
    permanent: bool = False

    @property
    def label(self) -> str:
        """A small, bounded metric label: `2xx`…`5xx`, `timeout`, `refused` or `error`."""
        if self.status is not None:
            return f"{self.status // 100}xx"
        if self.permanent:
            return "refused"
        if self.error and self.error.startswith("timeout"):
            return "timeout"
        return "error"

    def as_record(self, at: float) -> dict[str, Any]:
        """The attempt log entry kept in Redis and shown by `/auth/webhook/deliveries`."""
        record: dict[str, Any] = {
            "at": round(at, 3),
            "duration_ms": round(self.duration_ms, 1),
            "response": self.response,
        }
        if self.status is not None:
            record["status"] = self.status
        if self.error is not None:
            record["error"] = self.error
        return record


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date); None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; `-0000` parses without a zone
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now)


async def _read_some(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    buf = b""
    while len(buf) < limit:
        chunk = await resp.content.read(limit - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def _blocked_cause(exc: BaseException) -> BlockedAddress | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, BlockedAddress):
            return seen
        if isinstance(seen, aiohttp.ClientConnectorError) and isinstance(
            seen.os_error, BlockedAddress
        ):
            return seen.os_error
        seen = seen.__cause__
    return None


def _tls_reason(exc: aiohttp.ClientConnectorError) -> str:
    """OpenSSL's own words (`certificate has expired`), not aiohttp's wrapping of them."""
    cause = getattr(exc, "certificate_error", None) or exc.os_error
    if isinstance(cause, ssl.SSLCertVerificationError) and cause.verify_message:
        return f"{cause.verify_message} ({exc.host}:{exc.port})"
    if isinstance(cause, ssl.SSLError) and cause.reason:
        return f"{cause.reason} ({exc.host}:{exc.port})"
    return str(exc)


@lru_cache(maxsize=64)
def _total(timeout: float) -> aiohttp.ClientTimeout:
    """The (immutable) timeout of an attempt, built once per value, not per attempt."""
    return aiohttp.ClientTimeout(total=timeout)


async def send(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
) -> AttemptResult:
    """POST one event; never raises for what the network or receiver does."""
    started = time.perf_counter()

    def elapsed() -> float:
        return (time.perf_counter() - started) * 1000

    try:
        async with session.post(
            url,
            data=body,
            headers={**headers, "Accept-Encoding": "identity"},
            allow_redirects=False,
            timeout=_total(timeout),
        ) as resp:
            raw = await _read_some(resp, RESPONSE_KEEP)
            return AttemptResult(
                resp.status,
                None,
                elapsed(),
                raw.decode("utf-8", "replace"),
                parse_retry_after(resp.headers.get("Retry-After"), time.time()),
            )
    except TimeoutError:
        return AttemptResult(None, f"timeout after {timeout:g} s", elapsed(), "")
    except aiohttp.InvalidURL as exc:
        return AttemptResult(None, f"invalid URL: {exc}", elapsed(), "", permanent=True)
    except aiohttp.ClientConnectorError as exc:
        if (blocked := _blocked_cause(exc)) is not None:
            return AttemptResult(None, str(blocked), elapsed(), "", permanent=True)
        if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
            return AttemptResult(
                None, f"TLS verification failed: {_tls_reason(exc)}", elapsed(), ""
            )
        return AttemptResult(None, f"connection failed: {exc.os_error or exc}", elapsed(), "")
    except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
        if (blocked := _blocked_cause(exc)) is not None:
            return AttemptResult(None, str(blocked), elapsed(), "", permanent=True)
        return AttemptResult(None, f"{type(exc).__name__}: {exc}", elapsed(), "")
    except Exception as exc:  # whatever else a URL or library throws: a failed attempt, logged
        return AttemptResult(None, f"unexpected {type(exc).__name__}: {exc}", elapsed(), "")


# What the dispatcher does next.
@dataclass(frozen=True)
class Delivered:
    """A 2xx: done."""


@dataclass(frozen=True)
class RetryLater:
    """Try again after `after` seconds."""

    after: float


@dataclass(frozen=True)
class Gone:
    """410: the receiver asks us to stop; dead-letter this and its queue."""


@dataclass(frozen=True)
class Failed:
    """No more attempts (or none would help): dead-letter with `reason`."""

    reason: str


Outcome = Delivered | RetryLater | Gone | Failed


def jittered(delay: float, jitter: float, rng: random.Random | None = None) -> float:
    """`delay` ± `jitter` (a fraction), so retries of many deliveries do not arrive in step."""
    if delay <= 0 or jitter <= 0:
        return max(delay, 0.0)
    r = rng or random
    return delay * (1 + r.uniform(-jitter, jitter))


def describe(result: AttemptResult) -> str:
    """`HTTP 503`, or the error, for reasons and logs."""
    if result.status is not None:
        return f"HTTP {result.status}"
    return result.error or "error"


def decide(
    result: AttemptResult,
    attempt: int,
    schedule: Sequence[float],
    jitter: float,
    rng: random.Random | None = None,
) -> Outcome:
    """The outcome of attempt number `attempt` (1-based) under the retry `schedule`.

    `schedule[i]` is the delay before attempt i+1, so the schedule allows `len(schedule)`
    attempts. A `Retry-After` on 429/503 is a floor on the wait, honoured up to twice the
    scheduled delay (a receiver cannot park a delivery for days).
    """
    if result.permanent:
        return Failed(result.error or GUARD)
    if result.status is not None and 200 <= result.status < 300:
        return Delivered()
    if result.status == 410:
        return Gone()
    if attempt >= len(schedule):
        return Failed(f"gave up after {attempt} attempts; last: {describe(result)}")
    planned = schedule[attempt]
    delay = jittered(planned, jitter, rng)
    if result.status in (429, 503) and result.retry_after is not None:
        delay = max(delay, min(result.retry_after, 2 * planned))
    return RetryLater(delay)
