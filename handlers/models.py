"""The request models of every `/auth` route but create (whose model is `worker.rooms.request`).

Read through `worker.wire` like the create request: either spelling, protojson's scalar forms,
`null` = absent; `Proto3` marks the ones mirroring plugNmeet's messages. Each rule fails with
today's wording (`<field>: <rule>`), raised from the validators below.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from worker.rooms.request import CreateRoomRequest, RoomId
from worker.webhooks.engine import ID_PATTERN, STATES
from worker.wire import Also, IntLike, Proto3, ReadAs, rule

MAX_ROOM_IDS = 1000
MAX_JOB_ID = 256
MAX_REDELIVER = 1000
DEFAULT_DELIVERIES = 50
MAX_DELIVERIES = 500


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _setting(info: ValidationInfo, name: str, default: int) -> int:
    settings = info.context.get("settings") if isinstance(info.context, dict) else None
    return int(getattr(settings, name, default))


def _bounded(low: int, high: int, *, zero: int | None = None) -> Callable[[Any], Any]:
    """An integer in [low, high]; `zero` (plugNmeet's "use the default") replaces a 0."""

    def check(value: Any) -> Any:
        if type(value) is not int:
            raise rule("must be an integer")
        if value == 0 and zero is not None:
            return zero
        if not low <= value <= high:
            raise rule(f"must be between {low} and {high}")
        return value

    return check


def _text(max_length: int = 256) -> Callable[[Any], Any]:
    """A non-empty string of at most `max_length` characters."""

    def check(value: Any) -> Any:
        if not isinstance(value, str):
            raise rule("must be a string")
        if not value.strip():
            raise rule("must not be empty")
        if len(value) > max_length:
            raise rule(f"must be at most {max_length} characters")
        return value

    return check


def _choice(*options: str) -> Callable[[Any], Any]:
    """One of `options` by name (any case) or by number (its position; "" = the first)."""

    def check(value: Any) -> Any:
        if value == "":
            return options[0]
        if type(value) is int and 0 <= value < len(options):
            return options[value]
        if isinstance(value, str) and value.upper() in options:
            return value.upper()
        raise rule(f"must be one of {', '.join(sorted(options))}")

    return check


class RoomIdRequest(_Request, Proto3):
    """isRoomActive, getActiveRoomInfo, endRoom: a request naming one room."""

    room_id: RoomId


class NoRequest(_Request, Proto3):
    """getActiveRoomsInfo: nothing to say (`{}`)."""


def _room_ids(value: Any) -> Any:
    if not isinstance(value, list):
        raise rule("must be a list of room ids")
    if len(value) > MAX_ROOM_IDS:
        raise rule(f"must list at most {MAX_ROOM_IDS} room ids")
    return value


class PastRoomsRequest(_Request, Proto3):
    """fetchPastRooms (`from_` is accepted for the Python SDK; `limit` 0 = the default 20)."""

    room_ids: Annotated[list[RoomId], BeforeValidator(_room_ids)] = Field(default_factory=list)
    # A dataclass field cannot be called `from`, so the Python SDK sends `from_`.
    from_: Annotated[
        int, IntLike(), Also("from_"), BeforeValidator(_bounded(0, 10_000_000)), Field(alias="from")
    ] = 0
    limit: Annotated[int, IntLike(), BeforeValidator(_bounded(1, 100, zero=20))] = 20
    order_by: Annotated[
        str, BeforeValidator(_choice("DESC", "ASC")), WithJsonSchema({"enum": ["ASC", "DESC"]})
    ] = "DESC"


MAX_UNIX_S = 10**11 - 1  # what the schedule index's fixed-width time holds
_SCHEDULE_CURSOR = re.compile(r"[0-9]{11}\|[A-Za-z0-9_.:-]{1,256}")


def _schedule_cursor(value: Any) -> Any:
    if value == "":
        return value
    if not isinstance(value, str) or not _SCHEDULE_CURSOR.fullmatch(value):
        raise rule("not a cursor this API returned (use next_cursor as given)")
    return value


class ScheduledRoomsRequest(_Request):
    """fetchScheduledRooms: of `room_ids` (or all), `from` <= start_at <= `to`, paged by
    `cursor` (the last answer's `next_cursor`); `limit` 0 = the default 20."""

    room_ids: Annotated[list[RoomId], BeforeValidator(_room_ids)] = Field(default_factory=list)
    from_: Annotated[
        int, IntLike(), Also("from_"), BeforeValidator(_bounded(0, MAX_UNIX_S)), Field(alias="from")
    ] = 0
    to: Annotated[int | None, IntLike(), BeforeValidator(_bounded(0, MAX_UNIX_S))] = None
    limit: Annotated[int, IntLike(), BeforeValidator(_bounded(1, 100, zero=20))] = 20
    cursor: Annotated[str, BeforeValidator(_schedule_cursor)] = ""


class RecordingsRequest(_Request, Proto3):
    """recording/fetch: plugNmeet's FetchRecordingsReq (`limit` 0 = the default 20)."""

    room_ids: Annotated[list[RoomId], BeforeValidator(_room_ids)] = Field(default_factory=list)
    room_sid: Annotated[str | None, BeforeValidator(_text())] = None
    from_: Annotated[
        int, IntLike(), Also("from_"), BeforeValidator(_bounded(0, 10_000_000)), Field(alias="from")
    ] = 0
    limit: Annotated[int, IntLike(), BeforeValidator(_bounded(1, 100, zero=20))] = 20
    order_by: Annotated[
        str, BeforeValidator(_choice("DESC", "ASC")), WithJsonSchema({"enum": ["ASC", "DESC"]})
    ] = "DESC"


def _record_id(value: Any) -> Any:
    if not isinstance(value, str) or not value:
        raise rule("is required")
    if len(value) > 64 or not value.isascii() or not value.replace("_", "").isalnum():
        raise rule("must be a record id (an egress id such as EG_...)")
    return value


class RecordIdRequest(_Request, Proto3):
    """recording/info, delete, getDownloadToken: one recording, by its `record_id`."""

    record_id: Annotated[str, BeforeValidator(_record_id)]


class UserInfo(_Request, Proto3):
    """Who joins."""

    name: Annotated[str, BeforeValidator(_text())]
    user_id: Annotated[str, BeforeValidator(_text())]
    is_admin: StrictBool = False
    is_hidden: StrictBool = False
    user_metadata: dict[str, Any] | None = None


class JoinTokenRequest(_Request, Proto3):
    """getJoinToken."""

    room_id: RoomId
    user_info: UserInfo


def _items(name: str) -> Callable[[Any, ValidationInfo], Any]:
    """A list of 1 to `bulk_max_rooms` items."""

    def check(value: Any, info: ValidationInfo) -> Any:
        most = _setting(info, "bulk_max_rooms", 1000)
        if not isinstance(value, list):
            raise rule("must be a list")
        if not 1 <= len(value) <= most:
            raise rule(f"must hold 1 to {most} items, not {len(value)}")
        return value

    check.__name__ = f"_{name}_items"
    return check


class BulkRequest(_Request):
    """createBulk: 1 to `ROOMKEEPER_BULK_MAX_ROOMS` create requests, each validated on its own.

    The list is read (respelled) with the create model, then each room is validated by the
    handler, so one bad room gets its own message and the others go on.
    """

    rooms: Annotated[
        list[Any],
        ReadAs(CreateRoomRequest),
        Field(json_schema_extra={"x-items-model": "CreateRoomRequest"}),  # see handlers.openapi
    ]
    dry_run: StrictBool = Field(False, description="validate only: nothing is claimed or queued")

    @field_validator("rooms", mode="before")
    @classmethod
    def _rooms(cls, value: Any, info: ValidationInfo) -> Any:
        return _items("rooms")(value, info)


class JobStatusRequest(_Request):
    """job/status."""

    job_ids: list[str]

    @field_validator("job_ids", mode="wrap")
    @classmethod
    def _job_ids(cls, value: Any, handler: Any, info: ValidationInfo) -> Any:
        for i, job_id in enumerate(_items("job_ids")(value, info)):
            if not isinstance(job_id, str) or not 0 < len(job_id) <= MAX_JOB_ID:
                # A whole message: the item is named `job_ids[i]`, as the README shows.
                raise rule(f"must be a string of 1 to {MAX_JOB_ID} characters", f"[{i}]")
        return value


def _non_empty_room_id(value: Any) -> Any:
    if not isinstance(value, str) or not value:
        raise rule("must be a non-empty string")
    return value


def _delivery_limit(value: Any) -> Any:
    if type(value) is not int or not 1 <= value <= MAX_DELIVERIES:
        raise rule(f"must be an integer from 1 to {MAX_DELIVERIES}")
    return value


def _cursor(value: Any) -> Any:
    if value == "":
        return None
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise rule("not a cursor this API returned (use next_cursor as given)")
    return value


def _state(value: Any) -> Any:
    if value not in STATES:
        raise rule(f"must be one of {', '.join(STATES)}")
    return value


class DeliveriesRequest(_Request):
    """webhook/deliveries."""

    room_id: Annotated[str | None, BeforeValidator(_non_empty_room_id)] = None
    state: Annotated[
        str | None, BeforeValidator(_state), WithJsonSchema({"enum": list(STATES)})
    ] = None
    limit: Annotated[int, IntLike(), BeforeValidator(_delivery_limit)] = DEFAULT_DELIVERIES
    cursor: Annotated[str | None, BeforeValidator(_cursor)] = None


def _delivery_ids(value: Any) -> None:
    # Whole messages (loc left empty): an item is named `delivery_ids[i]`.
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_REDELIVER:
        raise rule(f"delivery_ids: must be a list of 1 to {MAX_REDELIVER} delivery ids")
    for i, v in enumerate(value):
        if not isinstance(v, str) or not ID_PATTERN.fullmatch(v):
            raise rule(f"delivery_ids[{i}]: not a delivery id (dlv_ and 20 hex digits)")


def _since(value: Any) -> Any:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)  # protojson's number-as-string
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise rule("must be unix seconds (a number >= 0)")
    return float(value)


REPLAY_STATES = ("dead", "all")


def _url(value: Any) -> Any:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise rule("must be an absolute http(s) URL")
    return value


def _replay_state(value: Any) -> Any:
    if value not in REPLAY_STATES:
        raise rule(f"must be one of {', '.join(REPLAY_STATES)}")
    return value


class RedeliverRequest(_Request):
    """webhook/redeliver: `{delivery_ids}`, `{room_id, since}`, or
    `{url, since, until?, state?, cursor?}` (unix seconds; state `dead` by default, or `all`)."""

    delivery_ids: list[str] | None = None
    room_id: Annotated[str | None, BeforeValidator(_non_empty_room_id)] = None
    url: Annotated[str | None, BeforeValidator(_url)] = None
    since: Annotated[float | None, BeforeValidator(_since)] = None
    until: Annotated[float | None, BeforeValidator(_since)] = None
    state: Annotated[
        str, BeforeValidator(_replay_state), WithJsonSchema({"enum": list(REPLAY_STATES)})
    ] = "dead"
    cursor: Annotated[str | None, BeforeValidator(_cursor)] = None

    @model_validator(mode="before")
    @classmethod
    def _ids_first(cls, data: Any) -> Any:
        if isinstance(data, dict) and "delivery_ids" in data:
            _delivery_ids(data["delivery_ids"])
        return data

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        forms = [f for f in ("delivery_ids", "room_id", "url") if getattr(self, f) is not None]
        if len(forms) > 1:
            raise rule("give one of delivery_ids, room_id (with since) or url (with since)")
        if self.delivery_ids is not None:
            if self.since is not None:
                raise rule("give either delivery_ids, or room_id with since, not both")
        elif not forms:
            raise rule("delivery_ids, room_id (with since) or url (with since) is required")
        elif self.since is None:
            raise rule(f"since: required with {forms[0]} (unix seconds)")
        elif self.until is not None and self.until <= self.since:
            raise rule("until: must be later than since")
        return self


class TestSendRequest(_Request):
    """webhook/test: `{url}`."""

    url: Annotated[str, BeforeValidator(_url)]
