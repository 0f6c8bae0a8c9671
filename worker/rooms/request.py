"""The create-room request: validated and normalised once, here.

The pydantic models below do the work, read through `worker.wire` (either spelling, protojson's
scalar forms, proto3 presence for camelCase messages): their defaults are the README's defaults,
`Also(...)` accepts plugNmeet's newer switch names, `extra="allow"` keeps unknown metadata keys,
and `model_dump(exclude_none=True)` is the normalised metadata. Errors leave this module as
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
    StrictBool,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from worker.webhooks.bodies import EVENTS
from worker.webhooks.netguard import IPAddress, IPNetwork, blocked_reason, literal_ip
from worker.wire import (
    Also,
    IntLike,
    Presence,
    Proto3,
    Read,
    WireInvalid,
    Zero,
    ZeroUnless,
    read,
    rule,
)

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
    """A request that breaks rules; str(e) / e.msg is the plugNmeet `msg`, `errors` each rule."""

    def __init__(self, msg: str, errors: list[str] | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.errors = errors or [msg]


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


@dataclass(frozen=True)
class CreateRoom:
    """A valid create request, normalised."""

    room_id: str
    max_participants: int  # 0 = unlimited
    empty_timeout: int  # seconds, resolved against the default
    departure_timeout: int  # seconds, resolved against the default
    room_duration: int  # minutes, after the cap; 0 = unlimited
    webhook_url: str | None
    metadata: dict[str, Any]
    metadata_json: str  # exactly what LiveKit stores
    start_at: int | None = None  # unix seconds the room is wanted from; None = now
    webhook_events: tuple[str, ...] = ()  # the room's event filter; empty = every event


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


class _Open(BaseModel, Proto3):
    """A metadata object: unknown keys are kept; it mirrors a plugNmeet proto message."""

    model_config = ConfigDict(extra="allow")


# The fields the seed names get defaults; plugNmeet's other fields (a `None` default) are
# type-checked and stored only when sent. See worker/wire.py for the markers.
OptBool = Annotated[StrictBool | None, Presence()]
OptStr = Annotated[StrictStr | None, Presence()]
OptInt = Annotated[int | None, Presence(), Field(strict=True, ge=0)]


class RecordingFeatures(_Open):
    is_allow: StrictBool = True
    is_allow_cloud: StrictBool = True
    is_allow_local: StrictBool = True
    enable_auto_cloud_recording: StrictBool = False
    only_record_admin_webcams: OptBool = None

    @model_validator(mode="after")
    def _off_clears_options(self) -> Self:
        if not self.is_allow:
            self.is_allow_cloud = self.is_allow_local = self.enable_auto_cloud_recording = False
        return self


class ChatFeatures(_Open):
    allow_chat: Annotated[StrictBool, Also("is_allow")] = True
    allow_file_upload: Annotated[StrictBool, Also("is_allow_file_upload")] = True
    allowed_file_types: list[StrictStr] | None = None
    max_file_size: OptInt = None

    @model_validator(mode="after")
    def _off_clears_upload(self) -> Self:
        if not self.allow_chat:
            self.allow_file_upload = False
        return self


class SharedNotePadFeatures(_Open):
    allowed_shared_note_pad: Annotated[StrictBool, Also("is_allow")] = True


class WhiteboardFeatures(_Open):
    allowed_whiteboard: Annotated[StrictBool, Also("is_allow")] = True
    preload_file: OptStr = None


class ExternalMediaPlayerFeatures(_Open):
    allowed_external_media_player: Annotated[StrictBool, Also("is_allow")] = True


class WaitingRoomFeatures(_Open):
    is_active: StrictBool = False
    waiting_room_msg: OptStr = None


class BreakoutRoomFeatures(_Open):
    # The seed's table names this switch `is_active`, its example and the SDKs `is_allow`: both are
    # read and it is stored as `is_allow`. Default on, like the other features a meeting has.
    is_allow: Annotated[StrictBool, Also("is_active")] = True
    # Checked below: its range depends on is_allow. Absent: plugNmeet's count in a snake_case
    # message; 0 (then the count if breakouts are on) in a camelCase one.
    allowed_number_rooms: Annotated[Any, IntLike(), Zero(0)] = None

    @model_validator(mode="after")
    def _room_count(self) -> Self:
        n = self.allowed_number_rooms
        if n is None or (n == 0 and self.is_allow and type(n) is int):
            # plugNmeet's rule: 0 means its default (the Python SDK makes callers pass a number).
            self.allowed_number_rooms = DEFAULT_BREAKOUT_ROOMS
        elif type(n) is not int:  # not isinstance: a bool is not a count
            raise rule("must be an integer", "allowed_number_rooms")
        # 0 is kept when breakouts are off.
        elif not 0 <= n <= MAX_BREAKOUT_ROOMS:
            raise rule(f"must be between 1 and {MAX_BREAKOUT_ROOMS}", "allowed_number_rooms")
        return self


class DisplayExternalLinkFeatures(_Open):
    # Same naming split as breakouts (`is_active` in the seed's table): stored as `is_allow`.
    is_allow: Annotated[StrictBool, Also("is_active")] = True
    link: OptStr = None
    shared_by: OptStr = None


class _Switched(_Open):
    """A newer features object whose switch is stored under a seed name (see RoomFeatures)."""

    is_allow: StrictBool = Field(False, exclude=True)  # moved to the seed's name before dumping


class PollsFeatures(_Switched):
    pass


class ExternalBroadcastingFeatures(_Switched):
    pass


class IngressFeatures(_Open):
    is_allow: OptBool = None


class SpeechToTextTranslationFeatures(_Open):
    is_allow: OptBool = None
    is_allow_translation: OptBool = None


class EndToEndEncryptionFeatures(_Open):
    is_enabled: OptBool = None


class InsightsFeatures(_Open):
    is_allow: OptBool = None


class CopyrightConf(_Open):
    display: OptBool = None
    text: OptStr = None


# newer features object -> the seed's switch it is stored as
_SWITCHED_AS = {"polls_features": "allow_polls", "external_broadcasting_features": "allow_rtmp"}


class RoomFeatures(_Open):
    allow_webcams: StrictBool = True
    mute_on_start: StrictBool = False
    allow_screen_share: StrictBool = True
    # or external_broadcasting_features.is_allow / polls_features.is_allow: _switches_by_seed_name
    allow_rtmp: Annotated[StrictBool, ZeroUnless("external_broadcasting_features")] = False
    admin_only_webcams: StrictBool = False
    allow_view_other_webcams: StrictBool = True
    allow_view_other_users_list: StrictBool = True
    allow_polls: Annotated[StrictBool, ZeroUnless("polls_features")] = True
    room_duration: Annotated[int, Presence()] = Field(
        0, strict=True, ge=0, le=MAX_ROOM_DURATION, validate_default=True
    )
    enable_analytics: OptBool = None
    allow_virtual_bg: OptBool = None
    allow_raise_hand: OptBool = None
    auto_gen_user_id: OptBool = None
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
    polls_features: PollsFeatures | None = None
    external_broadcasting_features: ExternalBroadcastingFeatures | None = None
    ingress_features: IngressFeatures | None = None
    speech_to_text_translation_features: SpeechToTextTranslationFeatures | None = None
    end_to_end_encryption_features: EndToEndEncryptionFeatures | None = None
    insights_features: InsightsFeatures | None = None

    @field_validator("room_duration")
    @classmethod
    def _cap_duration(cls, minutes: int, info: ValidationInfo) -> int:
        cap = _limits(info).max_room_duration
        return cap if cap > 0 and (minutes == 0 or minutes > cap) else minutes

    @model_validator(mode="before")
    @classmethod
    def _switches_by_seed_name(cls, data: Any) -> Any:
        # plugNmeet's newer `polls_features.is_allow` is stored as the seed's `allow_polls`, and
        # `external_broadcasting_features.is_allow` as `allow_rtmp` (the seed's name wins if both
        # are sent); the objects' other keys are kept. Not an AliasPath: pydantic would consume
        # the whole object.
        if not isinstance(data, dict):
            return data
        for section, seed_name in _SWITCHED_AS.items():
            newer = data.get(section)
            if not isinstance(newer, dict) or "is_allow" not in newer:
                continue
            rest = {k: v for k, v in newer.items() if k != "is_allow"}
            data = {k: v for k, v in data.items() if k != section}
            if rest:
                data[section] = rest
            if seed_name not in data:
                if not isinstance(newer["is_allow"], bool):
                    raise rule("must be a boolean", section, "is_allow")
                data[seed_name] = newer["is_allow"]
        return data


class DefaultLockSettings(_Open):
    # proto3 `optional` in plugNmeet: an absent lock keeps its default in either spelling.
    lock_microphone: Annotated[StrictBool, Presence()] = False
    lock_webcam: Annotated[StrictBool, Presence()] = False
    lock_screen_sharing: Annotated[StrictBool, Presence()] = True
    lock_whiteboard: Annotated[StrictBool, Presence()] = True
    lock_shared_notepad: Annotated[StrictBool, Presence()] = True
    lock_chat: Annotated[StrictBool, Presence()] = False
    lock_chat_send_message: Annotated[StrictBool, Presence()] = False
    lock_chat_file_share: Annotated[StrictBool, Presence()] = False
    lock_private_chat: Annotated[StrictBool, Presence()] = False


class RoomMetadata(_Open):
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
        return _json_checked(data, _limits(info), (), 1) if isinstance(data, dict) else data

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
            reason = blocked_reason(ip, _limits(info).allowed_cidrs) if ip else None
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
        return check_start_at(value, _limits(info), time.time())

    @model_validator(mode="after")
    def _normalised(self, info: ValidationInfo) -> Self:
        limits = _limits(info)
        metadata = self.metadata.model_dump(exclude_none=True)
        metadata_json = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)
        if len(metadata_json.encode()) > limits.max_metadata_bytes:
            raise rule(f"must be at most {limits.max_metadata_bytes} bytes as JSON", "metadata")
        self._room = CreateRoom(
            room_id=self.room_id,
            max_participants=self.max_participants,
            empty_timeout=self.empty_timeout or limits.default_empty_timeout,
            departure_timeout=self.departure_timeout or limits.default_departure_timeout,
            room_duration=self.metadata.room_features.room_duration,
            webhook_url=self.metadata.webhook_url,
            metadata=metadata,
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
