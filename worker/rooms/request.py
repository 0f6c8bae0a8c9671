"""The create-room request: validated and normalised once, here (contract §1.3).

The pydantic models below do the work: their defaults are the contract's defaults, their
validation aliases accept plugNmeet's newer switch names, `extra="allow"` keeps unknown metadata
keys, and `model_dump(exclude_none=True)` is the normalised metadata. Errors leave this module as
`RequestInvalid("<dotted.path>: <rule>")`, never in pydantic's wording.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import socket
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from worker.webhooks.bodies import EVENTS
from worker.webhooks.netguard import IPAddress, IPNetwork, blocked_reason, literal_ip

MAX_PARTICIPANTS = 100_000
MAX_EMPTY_TIMEOUT = 31 * 24 * 3600  # seconds
MAX_ROOM_DURATION = 31 * 24 * 60  # minutes
MAX_BREAKOUT_ROOMS = 16
DEFAULT_BREAKOUT_ROOMS = 6

ROOM_ID_RULE = "must be 1-256 characters of A-Z a-z 0-9 _ . : -"
URL_RULE = "must be an absolute http(s) URL"
_ROOM_ID = re.compile(r"[A-Za-z0-9_.:-]{1,256}")
_URL_JUNK = re.compile(r"[\x00-\x20\x7f]")  # urlsplit silently drops tabs/newlines; we refuse them
_NUMERIC_HOST = re.compile(r"[0-9a-fx.]+")
# json.loads lets a lone "\ud800" through, and UTF-8 (what LiveKit stores) cannot hold it.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class RequestInvalid(ValueError):
    """A request that breaks a rule; str(e) / e.msg is the plugNmeet `msg`."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


@dataclass(frozen=True)
class CreateLimits:
    """Operator-set bounds for one create request."""

    default_empty_timeout: int = 1800  # seconds, used when empty_timeout is 0/absent
    max_room_duration: int = 0  # minutes; 0 = no cap, else every room_duration is capped to it
    allowed_cidrs: tuple[IPNetwork, ...] = ()  # opened for the webhook_url SSRF check
    max_metadata_bytes: int = 512 * 1024  # LiveKit's metadata limit, on metadata_json as UTF-8
    max_string_length: int = 4096  # any string (or key) inside metadata
    max_depth: int = 16  # nesting of objects/arrays inside metadata; metadata itself is level 1


DEFAULT_LIMITS = CreateLimits()


@dataclass(frozen=True)
class CreateRoom:
    """A valid create request, normalised."""

    room_id: str
    max_participants: int  # 0 = unlimited
    empty_timeout: int  # seconds, resolved against the default
    room_duration: int  # minutes, after the cap; 0 = unlimited
    webhook_url: str | None
    metadata: dict[str, Any]
    metadata_json: str  # exactly what LiveKit stores
    webhook_events: tuple[str, ...] = ()  # the room's event filter; empty = every event


def _rule(rule: str, *at: str) -> PydanticCustomError:
    """A broken rule as a pydantic error; `at` extends the error's loc below the validated value."""
    return PydanticCustomError("roomkeeper", "{rule}", {"rule": rule, "at": at})


def _limits(info: ValidationInfo) -> CreateLimits:
    limits = info.context.get("limits") if isinstance(info.context, dict) else None
    return limits if isinstance(limits, CreateLimits) else DEFAULT_LIMITS


def _json_checked(value: Any, limits: CreateLimits, at: tuple[str, ...], depth: int) -> Any:
    """A copy of `value` without null object members, checked against the size limits.

    Nulls inside arrays are values, not absent keys, so they stay. The walk stops at
    `max_depth`, so hostile nesting cannot exhaust the stack.
    """
    most = limits.max_string_length
    if isinstance(value, dict | list) and depth > limits.max_depth:
        raise _rule(f"must not be nested more than {limits.max_depth} levels deep", *at)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str) or len(key) > most:
                raise _rule(f"keys must be strings of at most {most} characters", *at)
            if item is not None:
                out[key] = _json_checked(item, limits, (*at, key), depth + 1)
        return out
    if isinstance(value, list):
        return [_json_checked(v, limits, (*at, str(i)), depth + 1) for i, v in enumerate(value)]
    if isinstance(value, str):
        if len(value) > most:
            raise _rule(f"must be at most {most} characters", *at)
        if not value.isascii() and _SURROGATE.search(value):
            raise _rule("must be valid Unicode text", *at)
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise _rule("must be a finite number", *at)  # json.loads accepts NaN; LiveKit's JSON won't
    if value is None or isinstance(value, bool | int | float):
        return value
    raise _rule("must be a JSON value", *at)


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


def parse_room_id(value: object, field: str = "room_id") -> str:
    """The room_id rule, for every route that takes one."""
    if isinstance(value, str) and _ROOM_ID.fullmatch(value):
        return value
    raise RequestInvalid(f"{field}: {_room_id_problem(value)}")


class _Open(BaseModel):
    """A metadata object: unknown keys are kept, a newer alias is stored under the seed's name."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _drop_losing_aliases(self) -> Self:
        # pydantic consumes the alias it used; when both names were sent the other one would
        # otherwise survive as an "unknown" key and contradict the stored switch.
        extra = self.__pydantic_extra__ or {}
        for name, field in type(self).model_fields.items():
            if isinstance(field.validation_alias, AliasChoices):
                for choice in field.validation_alias.choices:
                    if isinstance(choice, str) and choice != name:
                        extra.pop(choice, None)
        return self


def _switch(default: bool, *names: str) -> Any:
    """A switch read under any of `names`; the first, the stored name, wins if several are sent."""
    return Field(default, validation_alias=AliasChoices(*names))


class RecordingFeatures(_Open):
    is_allow: StrictBool = True
    is_allow_cloud: StrictBool = True
    is_allow_local: StrictBool = True
    enable_auto_cloud_recording: StrictBool = False

    @model_validator(mode="after")
    def _off_clears_options(self) -> Self:
        if not self.is_allow:
            self.is_allow_cloud = self.is_allow_local = self.enable_auto_cloud_recording = False
        return self


class ChatFeatures(_Open):
    allow_chat: StrictBool = _switch(True, "allow_chat", "is_allow")
    allow_file_upload: StrictBool = _switch(True, "allow_file_upload", "is_allow_file_upload")

    @model_validator(mode="after")
    def _off_clears_upload(self) -> Self:
        if not self.allow_chat:
            self.allow_file_upload = False
        return self


class SharedNotePadFeatures(_Open):
    allowed_shared_note_pad: StrictBool = _switch(True, "allowed_shared_note_pad", "is_allow")


class WhiteboardFeatures(_Open):
    allowed_whiteboard: StrictBool = _switch(True, "allowed_whiteboard", "is_allow")


class ExternalMediaPlayerFeatures(_Open):
    allowed_external_media_player: StrictBool = _switch(
        True, "allowed_external_media_player", "is_allow"
    )


class WaitingRoomFeatures(_Open):
    is_active: StrictBool = False


class BreakoutRoomFeatures(_Open):
    # The seed's table names this switch `is_active`, its example and the SDKs `is_allow`: both are
    # read and it is stored as `is_allow`. Default on, like the other features a meeting has.
    is_allow: StrictBool = _switch(True, "is_allow", "is_active")
    allowed_number_rooms: Any = None  # checked below: its range depends on is_allow

    @model_validator(mode="after")
    def _room_count(self) -> Self:
        n = self.allowed_number_rooms
        if n is None:
            self.allowed_number_rooms = DEFAULT_BREAKOUT_ROOMS
        elif type(n) is not int:  # not isinstance: a bool is not a count
            raise _rule("must be an integer", "allowed_number_rooms")
        # 0 is tolerated when breakouts are off: the Python SDK makes callers send some number.
        elif not (1 if self.is_allow else 0) <= n <= MAX_BREAKOUT_ROOMS:
            raise _rule(f"must be between 1 and {MAX_BREAKOUT_ROOMS}", "allowed_number_rooms")
        return self


class DisplayExternalLinkFeatures(_Open):
    # Same naming split as breakouts (`is_active` in the seed's table): stored as `is_allow`.
    is_allow: StrictBool = _switch(True, "is_allow", "is_active")


class RoomFeatures(_Open):
    allow_webcams: StrictBool = True
    mute_on_start: StrictBool = False
    allow_screen_share: StrictBool = True
    allow_rtmp: StrictBool = False
    admin_only_webcams: StrictBool = False
    allow_view_other_webcams: StrictBool = True
    allow_view_other_users_list: StrictBool = True
    allow_polls: StrictBool = True  # or polls_features.is_allow, see _polls_under_seed_name
    room_duration: int = Field(0, strict=True, ge=0, le=MAX_ROOM_DURATION, validate_default=True)
    recording_features: RecordingFeatures = Field(default_factory=RecordingFeatures)
    chat_features: ChatFeatures = Field(default_factory=ChatFeatures)
    shared_note_pad_features: SharedNotePadFeatures = Field(default_factory=SharedNotePadFeatures)
    whiteboard_features: WhiteboardFeatures = Field(default_factory=WhiteboardFeatures)
    external_media_player_features: ExternalMediaPlayerFeatures = Field(
        default_factory=ExternalMediaPlayerFeatures
    )
    waiting_room_features: WaitingRoomFeatures = Field(default_factory=WaitingRoomFeatures)
    breakout_room_features: BreakoutRoomFeatures = Field(default_factory=BreakoutRoomFeatures)
    display_external_link_features: DisplayExternalLinkFeatures = Field(
        default_factory=DisplayExternalLinkFeatures
    )

    @field_validator("room_duration")
    @classmethod
    def _cap_duration(cls, minutes: int, info: ValidationInfo) -> int:
        cap = _limits(info).max_room_duration
        return cap if cap > 0 and (minutes == 0 or minutes > cap) else minutes

    @model_validator(mode="before")
    @classmethod
    def _polls_under_seed_name(cls, data: Any) -> Any:
        # plugNmeet's newer `polls_features.is_allow` is stored as the seed's `allow_polls` (the
        # seed's name wins if both are sent); other polls_features keys are kept as unknown keys.
        # Not an AliasPath: pydantic would consume the whole polls_features object.
        polls = data.get("polls_features") if isinstance(data, dict) else None
        if not isinstance(polls, dict) or "is_allow" not in polls:
            return data
        rest = {k: v for k, v in polls.items() if k != "is_allow"}
        data = {k: v for k, v in data.items() if k != "polls_features"}
        if rest:
            data["polls_features"] = rest
        if "allow_polls" not in data:
            if not isinstance(polls["is_allow"], bool):
                raise _rule("must be a boolean", "polls_features", "is_allow")
            data["allow_polls"] = polls["is_allow"]
        return data


class DefaultLockSettings(_Open):
    lock_microphone: StrictBool = False
    lock_webcam: StrictBool = False
    lock_screen_sharing: StrictBool = True
    lock_whiteboard: StrictBool = True
    lock_shared_notepad: StrictBool = True
    lock_chat: StrictBool = False
    lock_chat_send_message: StrictBool = False
    lock_chat_file_share: StrictBool = False
    lock_private_chat: StrictBool = False


class RoomMetadata(_Open):
    room_title: StrictStr
    welcome_message: StrictStr | None = None
    webhook_url: StrictStr | None = None
    webhook_events: list[StrictStr] | None = Field(
        None, validation_alias=AliasChoices("webhook_events", "webhookEvents")
    )
    logout_url: StrictStr | None = None
    room_features: RoomFeatures
    default_lock_settings: DefaultLockSettings = Field(default_factory=DefaultLockSettings)

    @model_validator(mode="before")
    @classmethod
    def _within_limits(cls, data: Any, info: ValidationInfo) -> Any:
        # Runs on the raw object, so size limits hold before anything else looks at it.
        return _json_checked(data, _limits(info), (), 1) if isinstance(data, dict) else data

    @field_validator("room_title")
    @classmethod
    def _title(cls, title: str) -> str:
        if not title.strip():
            raise _rule("must not be empty")
        return title

    @field_validator("webhook_events")
    @classmethod
    def _events(cls, events: list[str] | None) -> list[str] | None:
        if events is None:
            return None
        if not events:
            raise _rule("must list at least one event (leave it out for every event)")
        for i, name in enumerate(events):
            if name not in EVENTS:
                raise _rule(f"unknown event {name!r} (known: {', '.join(EVENTS)})", str(i))
        return list(dict.fromkeys(events))

    @field_validator("webhook_url", "logout_url")
    @classmethod
    def _url(cls, url: str | None, info: ValidationInfo) -> str | None:
        if not url:
            return None  # "" = absent
        if not _is_http_url(url):
            raise _rule(URL_RULE)
        # Only the webhook is fetched by us (logout_url is a browser redirect). A host name is
        # not resolved here: the delivery engine checks every address it connects to.
        if info.field_name == "webhook_url":
            ip = _host_address(urlsplit(url).hostname or "")
            reason = blocked_reason(ip, _limits(info).allowed_cidrs) if ip else None
            if reason:
                raise _rule(f"refused: {reason}")
        return url


class CreateRoomRequest(BaseModel):
    """The request body; field order is the order errors are reported in."""

    model_config = ConfigDict(extra="ignore")

    room_id: str
    max_participants: int = Field(0, strict=True, ge=0, le=MAX_PARTICIPANTS)
    empty_timeout: int = Field(0, strict=True, ge=0, le=MAX_EMPTY_TIMEOUT)
    metadata: RoomMetadata

    @field_validator("room_id", mode="before")
    @classmethod
    def _room_id(cls, value: Any) -> Any:
        if isinstance(value, str) and _ROOM_ID.fullmatch(value):
            return value
        raise _rule(_room_id_problem(value))


_RULES = {
    "missing": "is required",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "bool_type": "must be a boolean",
    "string_type": "must be a string",
    "int_type": "must be an integer >= 0",  # every pydantic-checked integer here is a count
    "greater_than_equal": "must be an integer >= {ge}",
    "less_than_equal": "must be at most {le}",
}
_UNITS = {"empty_timeout": " seconds (31 days)", "room_duration": " minutes (31 days)"}


def _message(error: ErrorDetails) -> str:
    """Our `<dotted.path>: <rule>` for one pydantic error."""
    ctx = error.get("ctx") or {}
    loc: tuple[int | str, ...] = error["loc"]
    if error["type"] == "roomkeeper":
        rule, loc = str(ctx["rule"]), (*loc, *ctx["at"])
    else:
        rule = _RULES.get(error["type"], "is invalid").format(**ctx)
        if error["type"] == "less_than_equal" and loc:
            rule += _UNITS.get(str(loc[-1]), "")
    path = ".".join(str(part) for part in loc)
    return f"{path}: {rule}" if path else rule


def parse_create_room(data: object, limits: CreateLimits = CreateLimits()) -> CreateRoom:
    """Validate a decoded /room/create body and normalise it; raises RequestInvalid."""
    if not isinstance(data, dict):
        raise RequestInvalid("request body must be a JSON object")
    body = {k: v for k, v in data.items() if v is not None}  # null = absent
    try:
        request = CreateRoomRequest.model_validate(body, context={"limits": limits})
    except ValidationError as exc:
        raise RequestInvalid(_message(exc.errors(include_url=False)[0])) from None
    metadata = request.metadata.model_dump(exclude_none=True)
    metadata_json = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)
    if len(metadata_json.encode()) > limits.max_metadata_bytes:
        raise RequestInvalid(f"metadata: must be at most {limits.max_metadata_bytes} bytes as JSON")
    return CreateRoom(
        room_id=request.room_id,
        max_participants=request.max_participants,
        empty_timeout=request.empty_timeout or limits.default_empty_timeout,
        room_duration=request.metadata.room_features.room_duration,
        webhook_url=request.metadata.webhook_url,
        metadata=metadata,
        metadata_json=metadata_json,
        webhook_events=tuple(request.metadata.webhook_events or ()),
    )
