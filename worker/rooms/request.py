"""The create-room request: validated and normalised once, here.

The pydantic models below (and the feature messages of `worker.rooms.features`) do the work,
read through `worker.wire` (either spelling, protojson's scalar forms, proto3 presence for
camelCase messages): their defaults are the README's defaults, `Also(...)` accepts plugNmeet's
newer switch names, `extra="allow"` keeps unknown metadata keys, and
`model_dump(exclude_none=True)` is the normalised metadata. Errors leave this module as
`RequestInvalid("<dotted.path>: <rule>")`, every broken rule at once, never in pydantic's wording.

Adding a field is one line in its model: a seed-style switch with its default (`name: StrictBool =
True`), or a plugNmeet field stored only when sent (`name: OptBool = None`).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import socket
import time
from dataclasses import dataclass
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from worker.rooms.features import (
    CopyrightConf,
    DefaultLockSettings,
    MetadataObject,
    OptBool,
    OptInt,
    OptStr,
    RoomFeatures,
)
from worker.rooms.limits import (
    DEFAULT_LIMITS,
    MAX_EMPTY_TIMEOUT,
    MAX_PARTICIPANTS,
    CreateLimits,
    limits_of,
)
from worker.rooms.metadata_json import metadata_json_of
from worker.webhooks.bodies import EVENTS
from worker.webhooks.netguard import IPAddress, blocked_reason, literal_ip
from worker.wire import (
    Presence,
    Proto3,
    Read,
    WireInvalid,
    read,
    rule,
)

ROOM_ID_RULE = "must be 1-256 characters of A-Z a-z 0-9 _ . : -"
URL_RULE = "must be an absolute http(s) URL"
_ROOM_ID = re.compile(r"[A-Za-z0-9_.:-]{1,256}")
_URL_JUNK = re.compile(r"[\x00-\x20\x7f]")  # urlsplit silently drops tabs/newlines; we refuse them
_NUMERIC_HOST = re.compile(r"[0-9a-fx.]+")
# json.loads lets a lone "\ud800" through, and UTF-8 (what LiveKit stores) cannot hold it.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class RequestInvalid(ValueError):
    """A request that breaks rules; str(e) / e.msg is the plugNmeet `msg`, `errors` each rule."""

    def __init__(self, msg: str, errors: list[str] | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.errors = errors or [msg]


@dataclass(frozen=True)
class CreateRoom:
    """A valid create request, normalised."""

    room_id: str
    max_participants: int  # 0 = unlimited
    empty_timeout: int  # seconds, resolved against the default
    departure_timeout: int  # seconds, resolved against the default
    room_duration: int  # minutes, after the cap; 0 = unlimited
    webhook_url: str | None
    metadata_json: str  # exactly what LiveKit stores
    start_at: int | None = None  # unix seconds the room is wanted from; None = now
    webhook_events: tuple[str, ...] = ()  # the room's event filter; empty = every event

    @property
    def metadata(self) -> dict[str, Any]:
        """The normalised metadata (decoded from what LiveKit stores: only tests ask)."""
        return json.loads(self.metadata_json)  # type: ignore[no-any-return]


def _json_checked(value: Any, limits: CreateLimits, at: tuple[str, ...], depth: int) -> Any:
    """A copy of `value` without null object members, checked against the size limits.

    Nulls inside arrays are values, not absent keys, so they stay. The walk stops at
    `max_depth`, so hostile nesting cannot exhaust the stack.
    """
    most = limits.max_string_length
    if isinstance(value, dict | list) and depth > limits.max_depth:
        raise rule(f"must not be nested more than {limits.max_depth} levels deep", *at)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str) or len(key) > most:
                raise rule(f"keys must be strings of at most {most} characters", *at)
            if item is not None:
                out[key] = _json_checked(item, limits, (*at, key), depth + 1)
        return out
    if isinstance(value, list):
        return [_json_checked(v, limits, (*at, str(i)), depth + 1) for i, v in enumerate(value)]
    if isinstance(value, str):
        if len(value) > most:
            raise rule(f"must be at most {most} characters", *at)
        if not value.isascii() and _SURROGATE.search(value):
            raise rule("must be valid Unicode text", *at)
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise rule("must be a finite number", *at)  # json.loads accepts NaN; LiveKit's JSON won't
    if value is None or isinstance(value, bool | int | float):
        return value
    raise rule("must be a JSON value", *at)


def _is_http_url(url: str) -> bool:
    """Whether `url` is an absolute http(s) URL with a host (and a sane port)."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not _URL_JUNK.search(url)


def _host_address(host: str) -> IPAddress | None:
    """The IP address a URL host denotes literally, else None (names are not resolved here)."""
    ip = literal_ip(host)
    if ip is None and _NUMERIC_HOST.fullmatch(host):
        # getaddrinfo reads "2130706433" and "0x7f.1" as IPv4 literals; judge them as such.
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return ip


def _room_id_problem(value: object) -> str:
    if value is None:
        return "is required"
    return ROOM_ID_RULE if isinstance(value, str) else "must be a string"


def _check_room_id(value: Any) -> Any:
    if isinstance(value, str) and _ROOM_ID.fullmatch(value):
        return value
    raise rule(_room_id_problem(value))


RoomId = Annotated[str, BeforeValidator(_check_room_id)]  # the room_id rule, for every route


class RoomMetadata(MetadataObject):
    room_title: StrictStr
    welcome_message: StrictStr | None = None
    webhook_url: StrictStr | None = None
    webhook_events: list[StrictStr] | None = None  # `webhookEvents` too, as every field
    logout_url: StrictStr | None = None
    room_features: RoomFeatures
    default_lock_settings: DefaultLockSettings = Field(default_factory=DefaultLockSettings)
    copyright_conf: CopyrightConf | None = None
    extra_data: Any = None  # a map of strings (PHP v2), or a string (older SDKs)
    # Set by plugNmeet itself; a client sending them gets them stored as sent.
    is_recording: OptBool = None
    is_active_rtmp: OptBool = None
    is_breakout_room: OptBool = None
    parent_room_id: OptStr = None
    started_at: OptInt = None
    metadata_id: OptStr = None

    @model_validator(mode="before")
    @classmethod
    def _within_limits(cls, data: Any, info: ValidationInfo) -> Any:
        # Runs on the raw object, so size limits hold before anything else looks at it.
        return _json_checked(data, limits_of(info), (), 1) if isinstance(data, dict) else data

    @field_validator("room_title")
    @classmethod
    def _title(cls, title: str) -> str:
        if not title.strip():
            raise rule("must not be empty")
        return title

    @field_validator("webhook_events")
    @classmethod
    def _events(cls, events: list[str] | None) -> list[str] | None:
        if events is None:
            return None
        if not events:
            raise rule("must list at least one event (leave it out for every event)")
        for i, name in enumerate(events):
            if name not in EVENTS:
                raise rule(f"unknown event {name!r} (known: {', '.join(EVENTS)})", str(i))
        return list(dict.fromkeys(events))

    @field_validator("extra_data")
    @classmethod
    def _extra_data(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return value
        raise rule("must be an object of strings (or a string)")

    @field_validator("webhook_url", "logout_url")
    @classmethod
    def _url(cls, url: str | None, info: ValidationInfo) -> str | None:
        if not url:
            return None  # "" = absent
        if not _is_http_url(url):
            raise rule(URL_RULE)
        # Only the webhook is fetched by us (logout_url is a browser redirect). A host name is
        # not resolved here: the delivery engine checks every address it connects to.
        if info.field_name == "webhook_url":
            ip = _host_address(urlsplit(url).hostname or "")
            reason = blocked_reason(ip, limits_of(info).allowed_cidrs) if ip else None
            if reason:
                raise rule(f"refused: {reason}")
        return url


START_AT_RULE = "must be unix seconds (an integer, or a string of digits)"


def check_start_at(value: object, limits: CreateLimits, now: float) -> int | None:
    """`start_at` as unix seconds (None when absent); raises the rule it breaks."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise rule(START_AT_RULE)
    if value > now + limits.max_schedule_ahead:
        raise rule(f"must be at most {limits.max_schedule_ahead / 86400:g} days ahead")
    return value


class CreateRoomRequest(BaseModel, Proto3):
    """The request body; field order is the order errors are reported in."""

    model_config = ConfigDict(extra="ignore")

    room_id: RoomId
    max_participants: Annotated[int, Presence()] = Field(0, strict=True, ge=0, le=MAX_PARTICIPANTS)
    empty_timeout: Annotated[int, Presence()] = Field(0, strict=True, ge=0, le=MAX_EMPTY_TIMEOUT)
    departure_timeout: Annotated[int, Presence()] = Field(
        0, strict=True, ge=0, le=MAX_EMPTY_TIMEOUT
    )
    metadata: RoomMetadata
    # Not in plugNmeet's message: roomkeeper's own. Beyond the lead it schedules the room.
    start_at: Annotated[int | None, Presence()] = Field(
        None,
        description="unix seconds (or a string of digits): the room is created "
        "ROOMKEEPER_SCHEDULE_LEAD seconds before it; past or nearer = now; at most "
        "ROOMKEEPER_SCHEDULE_MAX_AHEAD ahead",
    )
    _room: CreateRoom | None = PrivateAttr(None)

    @field_validator("start_at", mode="before")
    @classmethod
    def _start_at(cls, value: Any, info: ValidationInfo) -> Any:
        return check_start_at(value, limits_of(info), time.time())

    @model_validator(mode="after")
    def _normalised(self, info: ValidationInfo) -> Self:
        limits = limits_of(info)
        metadata_json = metadata_json_of(self.metadata)
        if len(metadata_json.encode()) > limits.max_metadata_bytes:
            raise rule(f"must be at most {limits.max_metadata_bytes} bytes as JSON", "metadata")
        self._room = CreateRoom(
            room_id=self.room_id,
            max_participants=self.max_participants,
            empty_timeout=self.empty_timeout or limits.default_empty_timeout,
            departure_timeout=self.departure_timeout or limits.default_departure_timeout,
            room_duration=self.metadata.room_features.room_duration,
            webhook_url=self.metadata.webhook_url,
            metadata_json=metadata_json,
            start_at=self.start_at,
            webhook_events=tuple(self.metadata.webhook_events or ()),
        )
        return self

    @property
    def room(self) -> CreateRoom:
        """The normalised create (metadata dumped, defaults resolved against the limits)."""
        assert self._room is not None
        return self._room


UNITS = {
    "empty_timeout": " seconds (31 days)",
    "departure_timeout": " seconds (31 days)",
    "room_duration": " minutes (31 days)",
}


def read_create_room(
    data: object, limits: CreateLimits = DEFAULT_LIMITS
) -> Read[CreateRoomRequest]:
    """A decoded create body read in either spelling; raises RequestInvalid with every error."""
    try:
        return read(CreateRoomRequest, data, {"limits": limits}, UNITS)
    except WireInvalid as exc:
        raise RequestInvalid(exc.msg, exc.errors) from None


def parse_create_room(data: object, limits: CreateLimits = DEFAULT_LIMITS) -> CreateRoom:
    """Validate a decoded /room/create body and normalise it; raises RequestInvalid."""
    return read_create_room(data, limits).value.room
