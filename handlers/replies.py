"""plugNmeet-shaped answers: `{"status", "msg", "status_code", ...}`, and the one error type."""

from __future__ import annotations

from typing import Any

from aiohttp import web


class ApiError(Exception):
    """An answer with `status: false`; HTTP 200 unless the contract says otherwise (401/413/415)."""

    def __init__(self, status_code: str, msg: str, http_status: int = 200) -> None:
        super().__init__(msg)
        self.status_code = status_code
        self.msg = msg
        self.http_status = http_status


STATUS_CODE = web.ResponseKey[str]("status_code")  # read by the metrics middleware


def _reply(status: bool, status_code: str, msg: str, http_status: int, extra: Any) -> web.Response:
    response = web.json_response(
        {"status": status, "msg": msg, "status_code": status_code, **extra}, status=http_status
    )
    response[STATUS_CODE] = status_code
    return response


def ok(msg: str = "success", *, http_status: int = 200, **extra: Any) -> web.Response:
    """A `status: true` answer with extra keys."""
    return _reply(True, "SUCCESS", msg, http_status, extra)


def failure(status_code: str, msg: str, *, http_status: int = 200, **extra: Any) -> web.Response:
    """A `status: false` answer."""
    return _reply(False, status_code, msg, http_status, extra)
