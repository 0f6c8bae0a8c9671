"""The create request's `room_features` and `default_lock_settings`: plugNmeet's feature messages.

Each model mirrors a plugNmeet proto message and is read through `worker.wire`; the seed's
switches carry their defaults, plugNmeet's newer fields are stored only when sent. The request
model around them is `worker.rooms.request`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from worker.rooms.limits import (
    DEFAULT_BREAKOUT_ROOMS,
    MAX_BREAKOUT_ROOMS,
    MAX_ROOM_DURATION,
    limits_of,
)
from worker.wire import Also, IntLike, Presence, Proto3, Zero, ZeroUnless, rule

M = TypeVar("M", bound=BaseModel)


def copies_of(model: type[M]) -> Callable[[], M]:
    """A default factory: fresh copies of `model()`, validated once here instead of per request.

    Each copy is the object `model()` gives (the same field values, fields set, no extras), each
    its own (a validator may change it); pydantic's own `__copy__` costs more than validating.
    """
    proto = model()
    values, fields_set = proto.__dict__, proto.__pydantic_fields_set__
    new, assign = model.__new__, object.__setattr__
    # BaseModel's slots, set through their descriptors (no attribute lookup per copy).
    slots = vars(BaseModel)
    set_fields_set = slots["__pydantic_fields_set__"].__set__
    set_extra = slots["__pydantic_extra__"].__set__
    set_private = slots["__pydantic_private__"].__set__

    def copy() -> M:
        made = new(model)
        assign(made, "__dict__", values.copy())
        set_fields_set(made, set(fields_set))
        set_extra(made, {})
        set_private(made, None)
        return made

    return copy


class MetadataObject(BaseModel, Proto3):
    """A metadata object: unknown keys are kept; it mirrors a plugNmeet proto message."""

    model_config = ConfigDict(extra="allow")


# The fields the seed names get defaults; plugNmeet's other fields (a `None` default) are
# type-checked and stored only when sent. See worker/wire.py for the markers.
OptBool = Annotated[StrictBool | None, Presence()]
OptStr = Annotated[StrictStr | None, Presence()]
OptInt = Annotated[int | None, Presence(), Field(strict=True, ge=0)]


class RecordingFeatures(MetadataObject):
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


class ChatFeatures(MetadataObject):
    allow_chat: Annotated[StrictBool, Also("is_allow")] = True
    allow_file_upload: Annotated[StrictBool, Also("is_allow_file_upload")] = True
    allowed_file_types: list[StrictStr] | None = None
    max_file_size: OptInt = None

    @model_validator(mode="after")
    def _off_clears_upload(self) -> Self:
        if not self.allow_chat:
            self.allow_file_upload = False
        return self


class SharedNotePadFeatures(MetadataObject):
    allowed_shared_note_pad: Annotated[StrictBool, Also("is_allow")] = True


class WhiteboardFeatures(MetadataObject):
    allowed_whiteboard: Annotated[StrictBool, Also("is_allow")] = True
    preload_file: OptStr = None


class ExternalMediaPlayerFeatures(MetadataObject):
    allowed_external_media_player: Annotated[StrictBool, Also("is_allow")] = True


class WaitingRoomFeatures(MetadataObject):
    is_active: StrictBool = False
    waiting_room_msg: OptStr = None


class BreakoutRoomFeatures(MetadataObject):
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


class DisplayExternalLinkFeatures(MetadataObject):
    # Same naming split as breakouts (`is_active` in the seed's table): stored as `is_allow`.
    is_allow: Annotated[StrictBool, Also("is_active")] = True
    link: OptStr = None
    shared_by: OptStr = None


class _Switched(MetadataObject):
    """A newer features object whose switch is stored under a seed name (see RoomFeatures)."""

    is_allow: StrictBool = Field(False, exclude=True)  # moved to the seed's name before dumping


class PollsFeatures(_Switched):
    pass


class ExternalBroadcastingFeatures(_Switched):
    pass


class IngressFeatures(MetadataObject):
    is_allow: OptBool = None


class SpeechToTextTranslationFeatures(MetadataObject):
    is_allow: OptBool = None
    is_allow_translation: OptBool = None


class EndToEndEncryptionFeatures(MetadataObject):
    is_enabled: OptBool = None


class InsightsFeatures(MetadataObject):
    is_allow: OptBool = None


class CopyrightConf(MetadataObject):
    display: OptBool = None
    text: OptStr = None


# newer features object -> the seed's switch it is stored as
_SWITCHED_AS = {"polls_features": "allow_polls", "external_broadcasting_features": "allow_rtmp"}


class RoomFeatures(MetadataObject):
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
    recording_features: RecordingFeatures = Field(default_factory=copies_of(RecordingFeatures))
    chat_features: ChatFeatures = Field(default_factory=copies_of(ChatFeatures))
    shared_note_pad_features: SharedNotePadFeatures = Field(
        default_factory=copies_of(SharedNotePadFeatures)
    )
    whiteboard_features: WhiteboardFeatures = Field(default_factory=copies_of(WhiteboardFeatures))
    external_media_player_features: ExternalMediaPlayerFeatures = Field(
        default_factory=copies_of(ExternalMediaPlayerFeatures)
    )
    waiting_room_features: WaitingRoomFeatures = Field(
        default_factory=copies_of(WaitingRoomFeatures)
    )
    breakout_room_features: BreakoutRoomFeatures = Field(
        default_factory=copies_of(BreakoutRoomFeatures)
    )
    display_external_link_features: DisplayExternalLinkFeatures = Field(
        default_factory=copies_of(DisplayExternalLinkFeatures)
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
        cap = limits_of(info).max_room_duration
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


class DefaultLockSettings(MetadataObject):
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
