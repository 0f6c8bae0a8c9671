"""Small validators for the fields of the non-create routes, each failing with a plugNmeet error."""

from __future__ import annotations

from typing import Any

from handlers.replies import ApiError
from worker.rooms.request import RequestInvalid, parse_room_id

INVALID = "INVALID_PARAMETERS"


def request_object(body: Any) -> dict[str, Any]:
    """The body as a JSON object."""
    if not isinstance(body, dict):
        raise ApiError(INVALID, "request body must be a JSON object")
    return body


def room_id_of(body: Any, field: str = "room_id") -> str:
    """A valid `room_id` from the body."""
    try:
        return parse_room_id(request_object(body).get(field), field)
    except RequestInvalid as exc:
        raise ApiError(INVALID, exc.msg) from None


def room_ids_of(value: Any, field: str, *, limit: int) -> list[str]:
    """A list of valid room ids (absent/null = empty)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ApiError(INVALID, f"{field}: must be a list of room ids")
    if len(value) > limit:
        raise ApiError(INVALID, f"{field}: must list at most {limit} room ids")
    try:
        return [parse_room_id(v, f"{field}.{i}") for i, v in enumerate(value)]
    except RequestInvalid as exc:
        raise ApiError(INVALID, exc.msg) from None


def integer(value: Any, field: str, *, default: int, low: int, high: int) -> int:
    """An integer within [low, high] (absent/null = default; booleans are not integers)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(INVALID, f"{field}: must be an integer")
    if not low <= value <= high:
        raise ApiError(INVALID, f"{field}: must be between {low} and {high}")
    return value


def boolean(value: Any, field: str, *, default: bool = False) -> bool:
    """A JSON boolean (absent/null = default)."""
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(INVALID, f"{field}: must be a boolean")
    return value


def text(value: Any, field: str, *, required: bool, max_length: int = 256) -> str:
    """A string (non-empty when required)."""
    if value is None:
        if required:
            raise ApiError(INVALID, f"{field}: is required")
        return ""
    if not isinstance(value, str):
        raise ApiError(INVALID, f"{field}: must be a string")
    if required and not value.strip():
        raise ApiError(INVALID, f"{field}: must not be empty")
    if len(value) > max_length:
        raise ApiError(INVALID, f"{field}: must be at most {max_length} characters")
    return value


def choice(value: Any, field: str, options: tuple[str, ...], default: str) -> str:
    """One of `options` (case-insensitive; absent/null = default)."""
    if value is None:
        return default
    if not isinstance(value, str) or value.upper() not in options:
        raise ApiError(INVALID, f"{field}: must be one of {', '.join(options)}")
    return value.upper()
