"""Journal of received RoomService calls, for inspection by tests and benchmarks."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from typing import Any


class CallRecord:
    """One Twirp request and how it was answered."""

    __slots__ = ("at", "code", "content_type", "method", "room", "status")

    def __init__(self, method: str, at: float, content_type: str) -> None:
        self.method = method
        # Wall-clock arrival time, so tests can line calls up with their own timestamps.
        self.at = at
        self.content_type = content_type
        self.room = ""
        self.status = 0
        self.code = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "method": self.method,
            "room": self.room,
            "status": self.status,
            "code": self.code,
            "content_type": self.content_type,
            "at": self.at,
        }


class CallLog:
    """Bounded call journal plus exact per-method totals."""

    def __init__(self, max_records: int) -> None:
        self.records: deque[CallRecord] = deque(maxlen=max_records)
        self.counts: Counter[str] = Counter()

    def start(self, method: str, at: float, content_type: str) -> CallRecord:
        """Record a call as it arrives; the handler fills in room/status/code."""
        record = CallRecord(method, at, content_type)
        self.records.append(record)
        self.counts[method] += 1
        return record

    def list(self, method: str | None = None, room: str | None = None) -> Iterable[CallRecord]:
        """Calls in arrival order, optionally filtered."""
        for record in self.records:
            if method and record.method != method:
                continue
            if room and record.room != room:
                continue
            yield record

    def clear(self) -> None:
        """Forget calls and totals."""
        self.records.clear()
        self.counts.clear()
