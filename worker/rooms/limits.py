"""The bounds a create request is checked against: fixed maxima and the operator's settings."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationInfo

from worker.webhooks.netguard import IPNetwork

MAX_PARTICIPANTS = 100_000
MAX_EMPTY_TIMEOUT = 31 * 24 * 3600  # seconds
MAX_ROOM_DURATION = 31 * 24 * 60  # minutes
MAX_BREAKOUT_ROOMS = 16
DEFAULT_BREAKOUT_ROOMS = 6


@dataclass(frozen=True)
class CreateLimits:
    """Operator-set bounds for one create request."""

    default_empty_timeout: int = 1800  # seconds, used when empty_timeout is 0/absent
    default_departure_timeout: int = 60  # seconds, used when departure_timeout is 0/absent
    max_room_duration: int = 0  # minutes; 0 = no cap, else every room_duration is capped to it
    allowed_cidrs: tuple[IPNetwork, ...] = ()  # opened for the webhook_url SSRF check
    max_metadata_bytes: int = 512 * 1024  # LiveKit's metadata limit, on metadata_json as UTF-8
    max_string_length: int = 4096  # any string (or key) inside metadata
    max_depth: int = 16  # nesting of objects/arrays inside metadata; metadata itself is level 1
    max_schedule_ahead: float = 400 * 86400.0  # seconds ahead a start_at may lie


DEFAULT_LIMITS = CreateLimits()


def limits_of(info: ValidationInfo) -> CreateLimits:
    limits = info.context.get("limits") if isinstance(info.context, dict) else None
    return limits if isinstance(limits, CreateLimits) else DEFAULT_LIMITS
