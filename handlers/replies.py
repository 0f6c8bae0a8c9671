"""plugNmeet-shaped answers (`{"status", "msg", "status_code", ...}`), status codes, the error type.

Every success carries `warnings`: what the request reader noticed (unknown keys, kept or
ignored), collected for the request being answered by `warn()`; plugNmeet's SDKs skip keys they
do not know, so the list costs them nothing.
"""

from __future__ import annotations

import contextvars
import json
from enum import StrEnum
from typing import Any

import orjson
from aiohttp import web


class StatusCode(StrEnum):
    """plugNmeet's `status_code` values."""

    SUCCESS = "SUCCESS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    INVALID_TOKEN_OR_SIGNATURE = "INVALID_TOKEN_OR_SIGNATURE"  # noqa: S105 - a code, no secret
    INVALID_API_KEY = "INVALID_API_KEY"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
    INVALID_PARAMETERS = "INVALID_PARAMETERS"
    MISSING_REQUIRED_PARAMETER = "MISSING_REQUIRED_PARAMETER"
    ROOM_NOT_FOUND = "ROOM_NOT_FOUND"
    ROOM_NOT_ACTIVE = "ROOM_NOT_ACTIVE"


class ApiError(Exception):
    """An answer with `status: false`; HTTP 200 but for auth, size and type (401/413/415)."""

    def __init__(
        self,
        status_code: StatusCode,
        msg: str,
        http_status: int = 200,
        **extra: Any,
    ) -> None:
        super().__init__(msg)
        self.status_code = status_code
        self.msg = msg
        self.http_status = http_status
        self.extra = extra


STATUS_CODE = web.ResponseKey[str]("status_code")  # read by the metrics middleware
_WARNINGS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "warnings", default=None
)


def collect_warnings() -> list[str]:
    """Start collecting warnings for the request handled in this task; the list is returned."""
    warnings: list[str] = []
    _WARNINGS.set(warnings)
    return warnings


def warn(*messages: str) -> None:
    """Add warnings to the answer of the request handled in this task."""
    warnings = _WARNINGS.get()
    if warnings is not None:
        warnings.extend(messages)


def _reply(
    status: bool, status_code: StatusCode, msg: str, http_status: int, extra: Any
) -> web.Response:
    data = {"status": status, "msg": msg, "status_code": status_code.value, **extra}
    try:
        body = orjson.dumps(data)
    except TypeError:  # what orjson will not write (an integer beyond 64 bits): the stdlib will
        body = json.dumps(data).encode()
    response = web.Response(body=body, status=http_status, content_type="application/json")
    response[STATUS_CODE] = status_code.value
    return response


def ok(msg: str = "success", *, http_status: int = 200, **extra: Any) -> web.Response:
    """A `status: true` answer with extra keys, and the request's warnings."""
    extra["warnings"] = _WARNINGS.get() or []
    return _reply(True, StatusCode.SUCCESS, msg, http_status, extra)


def failure(
    status_code: StatusCode, msg: str, *, http_status: int = 200, **extra: Any
) -> web.Response:
    """A `status: false` answer."""
    return _reply(False, status_code, msg, http_status, extra)
