"""Twirp error codes, their HTTP statuses, and the exception the emulator raises for them."""

from __future__ import annotations

import json

# Twirp's canonical mapping (twitchtv/twirp errors.go, ServerHTTPStatusFromErrorCode).
TWIRP_HTTP_STATUS: dict[str, int] = {
    "canceled": 408,
    "unknown": 500,
    "invalid_argument": 400,
    "malformed": 400,
    "deadline_exceeded": 504,
    "not_found": 404,
    "bad_route": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "unauthenticated": 401,
    "resource_exhausted": 429,
    "failed_precondition": 412,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "dataloss": 500,
}

# Used only when a fault names an HTTP status but no code: the most natural code per status.
_CODE_FOR_STATUS: dict[int, str] = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    408: "canceled",
    409: "already_exists",
    412: "failed_precondition",
    429: "resource_exhausted",
    500: "internal",
    501: "unimplemented",
    503: "unavailable",
    504: "deadline_exceeded",
}


def http_status_for(code: str) -> int:
    """HTTP status Twirp uses for an error code (500 for codes it does not know)."""
    return TWIRP_HTTP_STATUS.get(code, 500)


def code_for_status(status: int) -> str:
    """A Twirp code matching an HTTP status, for faults that only give a status."""
    if status in _CODE_FOR_STATUS:
        return _CODE_FOR_STATUS[status]
    return "unavailable" if status >= 500 else "unknown"


class TwirpError(Exception):
    """A Twirp error: code, message, optional meta, and the HTTP status to answer with."""

    def __init__(
        self,
        code: str,
        msg: str,
        *,
        status: int | None = None,
        meta: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status if status is not None else http_status_for(code)
        self.meta = meta or {}

    def body(self) -> bytes:
        """The JSON error body exactly as a Twirp server writes it (meta omitted when empty)."""
        payload: dict[str, object] = {"code": self.code, "msg": self.msg}
        if self.meta:
            payload["meta"] = self.meta
        return json.dumps(payload, separators=(",", ":")).encode()


def not_found(msg: str) -> TwirpError:
    """A ``not_found`` error."""
    return TwirpError("not_found", msg)


def invalid_argument(msg: str) -> TwirpError:
    """An ``invalid_argument`` error."""
    return TwirpError("invalid_argument", msg)


# Messages copied from the LiveKit server so clients matching on text behave the same.
ROOM_NOT_FOUND = "requested room does not exist"
PARTICIPANT_NOT_FOUND = "participant does not exist"
PERMISSION_DENIED = "permissions denied"
