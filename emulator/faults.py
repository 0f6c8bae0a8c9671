"""Fault injection for RoomService and Egress calls: errors, added latency, dropped connections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import TWIRP_HTTP_STATUS, code_for_status, http_status_for

ROOM_SERVICE_METHODS = frozenset(
    {
        "CreateRoom",
        "ListRooms",
        "DeleteRoom",
        "ListParticipants",
        "GetParticipant",
        "RemoveParticipant",
        "UpdateRoomMetadata",
    }
)
EGRESS_METHODS = frozenset({"StartRoomCompositeEgress", "StopEgress", "ListEgress"})
FAULTABLE_METHODS = ROOM_SERVICE_METHODS | EGRESS_METHODS


class FaultSpecError(ValueError):
    """The fault description is invalid (answered with HTTP 400)."""


@dataclass(slots=True)
class Fault:
    """What to do to the next ``count`` matching calls (``count == -1``: until cleared)."""

    method: str
    count: int
    code: str | None
    http_status: int | None
    msg: str
    latency_ms: int
    drop_connection: bool

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        """Validate a ``POST /_emulator/faults`` body."""
        if not isinstance(data, dict):
            raise FaultSpecError("body must be a JSON object")
        method = data.get("method", "*")
        if method != "*" and method not in FAULTABLE_METHODS:
            raise FaultSpecError(f"unknown method {method!r}")
        count = data.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or (count < 1 and count != -1):
            raise FaultSpecError("count must be a positive integer or -1")
        latency_ms = data.get("latency_ms", 0)
        if not isinstance(latency_ms, int) or isinstance(latency_ms, bool) or latency_ms < 0:
            raise FaultSpecError("latency_ms must be a non-negative integer")
        drop = data.get("drop_connection", False)
        if not isinstance(drop, bool):
            raise FaultSpecError("drop_connection must be a boolean")
        code = data.get("code")
        status = data.get("http_status")
        if code is not None and code not in TWIRP_HTTP_STATUS:
            raise FaultSpecError(f"unknown twirp code {code!r}")
        if status is not None and (
            not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599
        ):
            raise FaultSpecError("http_status must be an HTTP status code")
        if code is None and status is None and not drop and latency_ms == 0:
            code = "unavailable"
        elif code is None and status is not None:
            code = code_for_status(status)
        if code is not None and status is None:
            status = http_status_for(code)
        msg = data.get("msg")
        if msg is None:
            msg = "injected fault" if code is not None else ""
        if not isinstance(msg, str):
            raise FaultSpecError("msg must be a string")
        return cls(method, count, code, status, msg, latency_ms, drop)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "method": self.method,
            "count": self.count,
            "code": self.code,
            "http_status": self.http_status,
            "msg": self.msg,
            "latency_ms": self.latency_ms,
            "drop_connection": self.drop_connection,
        }


class Faults:
    """Ordered fault queue: each call consumes one shot of the first fault that matches it."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        """Queue a fault behind the existing ones."""
        self._faults.append(fault)

    def clear(self) -> None:
        """Remove every fault."""
        self._faults.clear()

    def list(self) -> list[Fault]:
        """Pending faults, in order."""
        return list(self._faults)

    def take(self, method: str) -> Fault | None:
        """The fault to apply to this call, consuming one of its shots."""
        if not self._faults:
            # The common case under load: one falsy check and out.
            return None
        for index, fault in enumerate(self._faults):
            if fault.method == "*" or fault.method == method:
                if fault.count > 0:
                    fault.count -= 1
                    if fault.count == 0:
                        del self._faults[index]
                return fault
        return None
