"""A queue's head as the dispatcher reads it, and the final outcome it settles with the next read.

`peek.lua` and the tail of `advance.lua` return a head in one shape (`head_of`); a delivered or
dead head is settled as a `Final` in the same script that reads the next one; `observe` counts and
logs each attempt and the transition it made (`log_attempt`, then `count_transition`; the
dispatcher runs them through `account` while its next script call is out).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from worker.logs import get_logger
from worker.metrics import ATTEMPT_SECONDS, ATTEMPTS, DELIVERIES, DELIVERY_SECONDS, child
from worker.webhooks.attempt import AttemptResult, Delivered, Failed, Gone, Outcome, RetryLater
from worker.webhooks.delivery import created_at
from worker.webhooks.stored import attempt_entry

log = get_logger("roomkeeper.dispatch")

GONE_REASON = (
    "receiver answered 410 Gone; later events of this room to this URL are dead until a redelivery"
)
GONE_EARLIER = (
    "not sent: this room's URL answered 410 Gone to an earlier event; redeliver to reopen"
)
BODY_EXPIRED = "not sent: the event body expired before delivery"
INTERRUPTED = "interrupted: the worker stopped before the receiver answered (it may have the event)"


@dataclass(frozen=True)
class Head:
    """The delivery at the head of a queue, as `peek.lua` read it."""

    delivery_id: str
    record: dict[str, str]
    gone: bool
    body: str | None


@dataclass(frozen=True)
class Final:
    """A head delivery's final outcome (delivered or dead), still to be settled."""

    outcome: Delivered | Failed | Gone
    result: AttemptResult | None
    attempt: int | None
    began: float


@lru_cache(maxsize=4096)
def public_url(url: str) -> str:
    """A URL fit for logs: no credentials, no query (webhook URLs often carry tokens); each
    URL parsed once (it is logged with every attempt)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}{parts.path}"


def head_of(raw: list[Any]) -> Head:
    """A head as `peek.lua` (and the tail of `advance.lua`'s answer) returns it."""
    flat = raw[1]
    record = dict(zip(flat[::2], flat[1::2], strict=True))
    gone = len(raw) > 2 and int(raw[2]) == 1
    return Head(raw[0], record, gone, raw[3] if len(raw) > 3 else None)


def final_state(outcome: Outcome) -> tuple[str, str]:
    """The state (and reason) a final outcome leaves a delivery in."""
    if isinstance(outcome, Failed):
        return "dead", outcome.reason
    if isinstance(outcome, Gone):
        return "dead", GONE_REASON
    return "delivered", ""


def entry(result: AttemptResult, began: float) -> str:
    """An attempt's log line as stored (see `worker.webhooks.stored`)."""
    return attempt_entry(result.as_record(began))


def _delivery_fields(did: str, record: dict[str, str]) -> dict[str, Any]:
    """What every log line about a delivery names (its URL without the query)."""
    return {
        "delivery_id": did,
        "event_id": record.get("event_id"),
        "webhook_event": record.get("event"),
        "room_id": record.get("room_id"),
        "url": public_url(record.get("url", "")),
    }


def log_attempt(
    did: str,
    record: dict[str, str],
    result: AttemptResult,
    attempt: int | None,
    outcome: Outcome,
) -> None:
    """Log and count one attempt (what it sent to, what came back, what follows from it); one
    the worker's stop cut short is counted where it is noticed, as `interrupted`."""
    if result.error != INTERRUPTED:
        child(ATTEMPTS, result.label).inc()
        ATTEMPT_SECONDS.observe(result.duration_ms / 1000)
    log.info(
        "webhook attempt",
        **_delivery_fields(did, record),
        attempt=attempt,
        status=result.status,
        error=result.error,
        duration_ms=round(result.duration_ms, 1),
        outcome=type(outcome).__name__,
    )


def count_transition(did: str, record: dict[str, str], outcome: Outcome, moved: Any) -> None:
    """Count (and log, when it died) the transition a settle made (`moved` as settle.lua
    says: 1 when it moved the delivery on)."""
    if int(moved) != 1 or isinstance(outcome, RetryLater):
        return
    state, reason = final_state(outcome)
    child(DELIVERIES, state).inc()
    if state == "delivered":
        DELIVERY_SECONDS.observe(max(0.0, time.time() - created_at(did, record)))
    else:
        log.warning("webhook dead", **_delivery_fields(did, record), reason=reason)


def observe(
    did: str,
    record: dict[str, str],
    result: AttemptResult | None,
    attempt: int | None,
    outcome: Outcome,
    moved: Any,
) -> None:
    """Count and log an attempt and the transition it made (`moved` as settle.lua says)."""
    if result is not None:
        log_attempt(did, record, result, attempt, outcome)
    count_transition(did, record, outcome, moved)


class Transition(NamedTuple):
    """A settled head, its transition still to count (`count_transition`'s arguments)."""

    delivery_id: str
    record: dict[str, str]
    outcome: Outcome
    moved: Any


def account(
    uncounted: list[Transition], head: Head | None = None, step: Final | None = None
) -> None:
    """Count the transitions of heads settled earlier, then log (and count) the attempt
    `step` made of `head`, if it made one."""
    for transition in uncounted:
        count_transition(*transition)
    if head is not None and step is not None and step.result is not None:
        log_attempt(head.delivery_id, head.record, step.result, step.attempt, step.outcome)
