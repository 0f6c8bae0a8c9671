"""One webhook attempt, and what its answer means.

`send()` makes the attempt through the guarded connection pool (`worker.webhooks.http1`) and
turns whatever happened into an `AttemptResult`; `decide()` turns that into what the dispatcher
does next. Nothing here knows about Redis or arq.
"""

from __future__ import annotations

import datetime
import email.utils
import random
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from worker.webhooks.http1 import (
    GUARD,
    BlockedAddress,
    ConnectFailed,
    InvalidTarget,
    Pool,
    target,
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


def _tls_reason(exc: ssl.SSLError, url: str) -> str:
    """OpenSSL's own words (`certificate has expired`), and where."""
    where = target(url)
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"{exc.verify_message} ({where.host}:{where.port})"
    return f"{exc.reason or exc} ({where.host}:{where.port})"


async def send(
    pool: Pool,
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
        answer = await pool.post(url, body, headers, timeout)
    except TimeoutError:
        return AttemptResult(None, f"timeout after {timeout:g} s", elapsed(), "")
    except InvalidTarget as exc:
        return AttemptResult(None, f"invalid URL: {exc}", elapsed(), "", permanent=True)
    except BlockedAddress as exc:
        return AttemptResult(None, str(exc), elapsed(), "", permanent=True)
    except ssl.SSLError as exc:
        reason = _tls_reason(exc, url)
        return AttemptResult(None, f"TLS verification failed: {reason}", elapsed(), "")
    except ConnectFailed as exc:
        return AttemptResult(None, f"connection failed: {exc}", elapsed(), "")
    except OSError as exc:
        return AttemptResult(None, f"{type(exc).__name__}: {exc}", elapsed(), "")
    except Exception as exc:  # whatever else a URL or receiver causes: a failed attempt, logged
        return AttemptResult(None, f"unexpected {type(exc).__name__}: {exc}", elapsed(), "")
    return AttemptResult(
        answer.status,
        None,
        elapsed(),
        answer.body.decode("utf-8", "replace"),
        parse_retry_after(answer.retry_after, time.time()),
    )


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
