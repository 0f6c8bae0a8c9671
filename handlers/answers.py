"""The answer models of the `/auth` routes, for `/openapi.json` and the tests that check answers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from handlers.replies import StatusCode


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class Common(_Doc):
    """Every `/auth/*` answer: plugNmeet's convention."""

    status: bool
    msg: str
    status_code: StatusCode
    warnings: list[str] | None = Field(
        None, description="on success: what the reader noticed (unknown keys, kept or ignored)"
    )


class RoomInfo(_Doc):
    """A created room, as `room_info` and `roomInfo`: plugNmeet's ActiveRoomInfo and LiveKit's room.

    protojson readers skip the keys they do not know, so one object serves the seed (LiveKit's
    room), the JS and Python SDKs and PHP v2 (`ActiveRoomInfo`).
    """

    room_id: str
    room_title: str
    joined_participants: int
    is_running: bool
    is_recording: bool
    is_active_rtmp: bool
    webhook_url: str
    is_breakout_room: bool
    parent_room_id: str
    sid: str
    name: str
    max_participants: int
    empty_timeout: int
    creation_time: int
    turn_password: str
    enabled_codecs: list[dict[str, str]]
    metadata: str = Field(description="the normalised metadata, as JSON text")


class CreateAnswer(Common):
    """Create: the room (sync), `job_id` when queued (202), or `job_id` and `start_at` when
    scheduled (202, msg `scheduled`)."""

    room_info: RoomInfo | None = None
    roomInfo: RoomInfo | None = None  # the seed document's name for room_info
    job_id: str | None = None
    retrying: str | None = None
    start_at: int | None = None


class ActiveAnswer(Common):
    """isRoomActive (`is_active` is absent when the request itself was invalid); a room that is
    not live but scheduled answers msg `room is scheduled` with its `start_at`."""

    is_active: bool | None = None
    start_at: int | None = None


class ActiveRoomInfo(_Doc):
    """plugNmeet's ActiveRoomInfo."""

    room_title: str
    room_id: str
    sid: str
    joined_participants: int
    is_running: bool
    is_recording: bool
    is_active_rtmp: bool
    webhook_url: str
    is_breakout_room: bool
    parent_room_id: str
    creation_time: int
    metadata: str


class ActiveRoom(_Doc):
    """A live room with LiveKit's ParticipantInfo of everyone in it."""

    room_info: ActiveRoomInfo
    participants_info: list[dict[str, Any]]


class ActiveRoomAnswer(Common):
    """getActiveRoomInfo."""

    room: ActiveRoom | None = None


class ActiveRoomsAnswer(Common):
    """getActiveRoomsInfo."""

    rooms: list[ActiveRoom] | None = None


class PastRoom(_Doc):
    """One ended session."""

    room_title: str
    room_id: str
    room_sid: str
    joined_participants: int
    webhook_url: str
    created: int
    ended: int


class PastRoomsResult(_Doc):
    """A page of past rooms."""

    total_rooms: int
    from_: int = Field(alias="from")
    limit: int
    order_by: Literal["ASC", "DESC"]
    rooms_list: list[PastRoom]


class PastRoomsAnswer(Common):
    """fetchPastRooms."""

    result: PastRoomsResult | None = None


class ScheduledRoom(_Doc):
    """One room waiting for its start time."""

    room_id: str
    job_id: str
    start_at: int
    room_title: str
    webhook_url: str
    empty_timeout: int
    room_duration: int


class ScheduledRoomsAnswer(Common):
    """fetchScheduledRooms: by start time; `next_cursor` is '' on the last page."""

    rooms: list[ScheduledRoom] | None = None
    next_cursor: str | None = None


class Recording(_Doc):
    """plugNmeet's RecordingInfo: one finished recording (`file_size` in MB)."""

    record_id: str
    room_id: str
    room_sid: str
    file_path: str
    file_size: float
    creation_time: int
    room_creation_time: int


class RecordingsResult(_Doc):
    """A page of recordings."""

    total_recordings: int
    from_: int = Field(alias="from")
    limit: int
    order_by: Literal["ASC", "DESC"]
    recordings_list: list[Recording]


class RecordingsAnswer(Common):
    """recording/fetch."""

    result: RecordingsResult | None = None


class RecordingAnswer(Common):
    """recording/info: the recording and its session."""

    recording_info: Recording | None = None
    room_info: PastRoom | None = None


class JoinTokenAnswer(Common):
    """A LiveKit access token."""

    token: str | None = None


class BulkResult(_Doc):
    """One room's fate, in request order."""

    room_id: str | None = None
    accepted: bool
    job_id: str | None = None
    msg: str | None = None
    start_at: int | None = None


class BulkAnswer(Common):
    """createBulk."""

    results: list[BulkResult] | None = None
    dry_run: bool | None = None


class JobView(_Doc):
    """One create job."""

    job_id: str
    room_id: str
    state: Literal[
        "scheduled", "queued", "in_progress", "complete", "failed", "cancelled", "not_found"
    ]
    room_info: RoomInfo | None = None
    msg: str | None = None
    start_at: int | None = None


class JobStatusAnswer(Common):
    """job/status."""

    jobs: list[JobView] | None = None


class Attempt(_Doc):
    """One delivery attempt."""

    at: float
    status: int | None = None
    error: str | None = None
    duration_ms: float
    response: str


class Delivery(_Doc):
    """One event to one URL."""

    delivery_id: str
    event_id: str
    event: str
    room_id: str
    url: str
    state: Literal["pending", "delivered", "dead"]
    created_at: float
    reason: str | None = None
    finished_at: float | None = None
    next_attempt_at: float | None = None
    attempts: list[Attempt]


class DeliveriesAnswer(Common):
    """webhook/deliveries."""

    deliveries: list[Delivery] | None = None
    next_cursor: str | None = None


class RedeliverResult(_Doc):
    """What happened to one delivery."""

    delivery_id: str
    result: Literal["queued", "already delivered", "not found"]


class RedeliverAnswer(Common):
    """webhook/redeliver."""

    queued: int | None = None
    delivery_ids: list[str] | None = None
    results: list[RedeliverResult] | None = None
    next_cursor: str | None = Field(None, description="by url: more remain; pass it as cursor")


class TestSendAnswer(Common):
    """webhook/test: what the one attempt saw."""

    event_id: str | None = None
    delivered: bool | None = None
    attempt: Attempt | None = None
