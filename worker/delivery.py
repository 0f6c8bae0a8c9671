"""One webhook attempt over HTTP, the SSRF guard under it, and what the answer means.

The guard sits in the connector's resolver, so the address checked is the address connected to
(DNS rebinding cannot slip a private address in between); literal IPs never reach a resolver, so
they are checked before the request. Nothing here knows about Redis or arq.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from worker.netguard import IPNetwork, blocked_reason, literal_ip

RESPONSE_KEEP = 4096


class BlockedAddress(OSError):
    """Every address of a webhook host is one the SSRF guard refuses."""


class GuardedResolver(AbstractResolver):
    """Resolves with `inner`, then drops addresses the guard refuses; none left → BlockedAddress."""

    def __init__(
        self, allowed: Sequence[IPNetwork] = (), inner: AbstractResolver | None = None
    ) -> None:
        self._allowed = tuple(allowed)
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve `host`, keeping only addresses a webhook may reach."""
        results = await self._inner.resolve(host, port, family)
        kept = [r for r in results if blocked_reason(r["host"], self._allowed) is None]
        if not kept:
            reasons = {blocked_reason(r["host"], self._allowed) for r in results}
            raise BlockedAddress(
                f"refused: {host} resolves to {', '.join(sorted(map(str, reasons)))}"
            )
        return kept

    async def close(self) -> None:
        """Close the inner resolver."""
        await self._inner.close()


def make_session(
    allowed: Sequence[IPNetwork] = (),
    *,
    resolver: AbstractResolver | None = None,
    limit: int = 256,
) -> aiohttp.ClientSession:
    """The session every webhook attempt uses: guarded resolver, TLS verified, no env proxies."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(allowed, resolver),
        ssl=ssl.create_default_context(),
        limit=limit,
        limit_per_host=32,
    )
    # No cookie jar: one receiver's Set-Cookie must not travel to the next.
    return aiohttp.ClientSession(
        connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
    )


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt saw."""

    status: int | None
    error: str | None
    duration_ms: float
    response: str
    retry_after: float | None = None
    blocked: bool = False

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
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


async def send(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    allowed: Sequence[IPNetwork] = (),
) -> AttemptResult:
    """POST one event; never raises for what the network or receiver does."""
    started = time.perf_counter()

    def elapsed() -> float:
        return (time.perf_counter() - started) * 1000

    host = urlsplit(url).hostname or ""
    ip = literal_ip(host)
    if ip is not None and (reason := blocked_reason(ip, allowed)) is not None:
        return AttemptResult(None, f"refused: {reason}", elapsed(), "", blocked=True)
    try:
        async with session.post(
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            raw = await resp.content.read(RESPONSE_KEEP)
            return AttemptResult(
                resp.status,
                None,
                elapsed(),
                raw.decode("utf-8", "replace"),
                parse_retry_after(resp.headers.get("Retry-After"), time.time()),
            )
    except TimeoutError:
        return AttemptResult(None, f"timeout after {timeout:g} s", elapsed(), "")
    except aiohttp.ClientConnectorError as exc:
        cause = exc.__cause__ or exc.os_error
        if isinstance(cause, BlockedAddress):
            return AttemptResult(None, str(cause), elapsed(), "", blocked=True)
        if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
            return AttemptResult(None, f"TLS verification failed: {exc}", elapsed(), "")
        return AttemptResult(None, f"connection failed: {cause or exc}", elapsed(), "")
    except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
        return AttemptResult(None, f"{type(exc).__name__}: {exc}", elapsed(), "")


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


def decide(
    result: AttemptResult,
    attempt: int,
    schedule: Sequence[float],
    jitter: float,
    rng: random.Random | None = None,
) -> Outcome:
    """The outcome of attempt number `attempt` (1-based) under the retry `schedule`."""
    if result.blocked:
        return Failed(result.error or "refused by the SSRF guard")
    if result.status is not None and 200 <= result.status < 300:
        return Delivered()
    if result.status == 410:
        return Gone()
    what = f"HTTP {result.status}" if result.status is not None else (result.error or "error")
    if attempt >= len(schedule):
        return Failed(f"gave up after {attempt} attempts, last: {what}")
    delay = jittered(schedule[attempt], jitter, rng)
    if result.status in (429, 503) and result.retry_after is not None:
        # Honour the receiver's wish, but never beyond twice what the schedule planned.
        delay = min(result.retry_after, 2 * schedule[attempt])
    return RetryLater(delay)
