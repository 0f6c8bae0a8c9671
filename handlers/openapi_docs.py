"""Examples of each route's request and answer in `/openapi.json`, and the other routes' names.

`OPERATIONS` maps a path to examples of its request and answer (the `/auth` routes' operationIds
are in the route table, `handlers.routes.ROUTES`; the operational routes' are here); a test
parses every example with a client generated from the document, so none can drift from its
schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_ROOM_INFO = {
    "room_id": "room01",
    "room_title": "Test room",
    "joined_participants": 0,
    "is_running": True,
    "is_recording": False,
    "is_active_rtmp": False,
    "webhook_url": "https://lms.example.com/hooks/plugnmeet",
    "is_breakout_room": False,
    "parent_room_id": "",
    "sid": "RM_RStHosLHPUNg",
    "name": "room01",
    "max_participants": 0,
    "empty_timeout": 1800,
    "creation_time": 1795725244,
    "turn_password": "b2Zk…",
    "enabled_codecs": [{"mime": "audio/opus", "fmtp_line": ""}],
    "metadata": '{"room_title":"Test room","room_features":{…}}',
}
_ACTIVE_INFO = {
    "room_title": "Test room",
    "room_id": "room01",
    "sid": "RM_RStHosLHPUNg",
    "joined_participants": 1,
    "is_running": True,
    "is_recording": False,
    "is_active_rtmp": False,
    "webhook_url": "https://lms.example.com/hooks/plugnmeet",
    "is_breakout_room": False,
    "parent_room_id": "",
    "creation_time": 1795725244,
    "metadata": '{"room_title":"Test room","room_features":{…}}',
}
_OK = {"status": True, "msg": "success", "status_code": "SUCCESS"}
# No webhook_url in request examples: a tool that sends examples would make a delivery leave
# the machine. Real requests usually carry one (see the README's create example).
_CREATE = {
    "room_id": "room01",
    "metadata": {
        "room_title": "Test room",
        "room_features": {"allow_webcams": True, "room_duration": 60},
    },
}


_RECORDING = {
    "record_id": "EG_sV8n2QkUpYbD",
    "room_id": "room01",
    "room_sid": "RM_RStHosLHPUNg",
    "file_path": "recordings/room01/EG_sV8n2QkUpYbD.mp4",
    "file_size": 52.4,
    "creation_time": 1795728844,
    "room_creation_time": 1795725244,
}
_PAST_ROOM = {
    "room_title": "Test room",
    "room_id": "room01",
    "room_sid": "RM_RStHosLHPUNg",
    "joined_participants": 3,
    "webhook_url": "https://lms.example.com/hooks/plugnmeet",
    "created": 1795725244,
    "ended": 1795728844,
}
_NOT_HERE = {
    "status": False,
    "msg": "not supported here: recordings are files in your egress storage (their file_path); "
    "delete or serve them from there",
    "status_code": "NOT_FOUND",
}


@dataclass(frozen=True)
class Operation:
    """What `/openapi.json` says of one route beyond its schemas."""

    request: dict[str, Any] | None = None
    answer: dict[str, Any] = field(default_factory=dict)
    answer_code: str = "200"
    operation_id: str = ""  # the /auth routes' are in the route table


OPERATIONS: dict[str, Operation] = {
    "/auth/room/create": Operation(
        _CREATE, {**_OK, "room_info": _ROOM_INFO, "roomInfo": _ROOM_INFO}
    ),
    "/auth/room/isRoomActive": Operation(
        {"room_id": "room01"},
        {**_OK, "msg": "room is active", "is_active": True},
    ),
    "/auth/room/getActiveRoomInfo": Operation(
        {"room_id": "room01"},
        {**_OK, "room": {"room_info": _ACTIVE_INFO, "participants_info": []}},
    ),
    "/auth/room/getActiveRoomsInfo": Operation(
        {},
        {**_OK, "rooms": [{"room_info": _ACTIVE_INFO, "participants_info": []}]},
    ),
    "/auth/room/endRoom": Operation({"room_id": "room01"}, {**_OK, "msg": "room ended"}),
    "/auth/room/fetchPastRooms": Operation(
        {"room_ids": ["room01"], "from": 0, "limit": 20, "order_by": "DESC"},
        {
            **_OK,
            "result": {
                "total_rooms": 1,
                "from": 0,
                "limit": 20,
                "order_by": "DESC",
                "rooms_list": [_PAST_ROOM],
            },
        },
    ),
    "/auth/room/fetchScheduledRooms": Operation(
        {"from": 1801476000, "to": 1802080800, "limit": 20},
        {
            **_OK,
            "rooms": [
                {
                    "room_id": "maths-101-w01",
                    "job_id": "3f2a9c0e5b7d4e1f8a6b2c4d9e0f1a2b",
                    "start_at": 1801476000,
                    "room_title": "Maths 101 (week 1)",
                    "webhook_url": "https://lms.example.edu/hooks/meet",
                    "empty_timeout": 1800,
                    "room_duration": 90,
                }
            ],
            "next_cursor": "",
        },
    ),
    "/auth/room/getJoinToken": Operation(
        {"room_id": "room01", "user_info": {"name": "Ann", "user_id": "ann", "is_admin": True}},
        {**_OK, "token": "eyJhbGciOiJIUzI1NiJ9…"},
    ),
    "/auth/room/createBulk": Operation(
        {"rooms": [_CREATE, {**_CREATE, "room_id": "room02"}]},
        {
            **_OK,
            "msg": "2 of 2 rooms queued",
            "results": [
                {
                    "room_id": "room01",
                    "accepted": True,
                    "job_id": "8f14e45fceea167a5a36dedd4bea2543",
                },
                {
                    "room_id": "room02",
                    "accepted": True,
                    "job_id": "c9f0f895fb98ab9159f51fd0297e236d",
                },
            ],
        },
        answer_code="202",
    ),
    "/auth/job/status": Operation(
        {"job_ids": ["8f14e45fceea167a5a36dedd4bea2543"]},
        {
            **_OK,
            "jobs": [
                {
                    "job_id": "8f14e45fceea167a5a36dedd4bea2543",
                    "room_id": "room01",
                    "state": "complete",
                    "room_info": _ROOM_INFO,
                }
            ],
        },
    ),
    "/auth/webhook/deliveries": Operation(
        {"room_id": "room01", "state": "dead", "limit": 50},
        {
            **_OK,
            "deliveries": [
                {
                    "delivery_id": "dlv_06618ea4cb24a5871d1c",
                    "event_id": "99d2620c-4a01-50bd-96f8-48655a9c91ff",
                    "event": "session_ended",
                    "room_id": "room01",
                    "url": "https://lms.example.com/hooks/plugnmeet",
                    "state": "dead",
                    "created_at": 1795728840.5,
                    "finished_at": 1795790000.25,
                    "reason": "gave up after 8 attempts; last: HTTP 500",
                    "attempts": [
                        {"at": 1795728844.125, "status": 500, "duration_ms": 12.5, "response": ""}
                    ],
                }
            ],
            "next_cursor": None,
        },
    ),
    "/auth/webhook/redeliver": Operation(
        {"delivery_ids": ["dlv_06618ea4cb24a5871d1c"]},
        {
            **_OK,
            "queued": 1,
            "delivery_ids": ["dlv_06618ea4cb24a5871d1c"],
            "results": [{"delivery_id": "dlv_06618ea4cb24a5871d1c", "result": "queued"}],
            "next_cursor": None,
        },
    ),
    # The SSRF guard refuses this address (nothing is sent) unless loopback is allowed.
    "/auth/webhook/test": Operation(
        {"url": "http://127.0.0.1:9/hooks/plugnmeet"},
        {
            **_OK,
            "event_id": "3b241101-e2bb-4255-8caf-4136c566a962",
            "delivered": True,
            "attempt": {"at": 1795728844.125, "status": 200, "duration_ms": 8.5, "response": "ok"},
        },
    ),
    "/auth/recording/fetch": Operation(
        {"room_ids": ["room01"], "from": 0, "limit": 20, "order_by": "DESC"},
        {
            **_OK,
            "result": {
                "total_recordings": 1,
                "from": 0,
                "limit": 20,
                "order_by": "DESC",
                "recordings_list": [_RECORDING],
            },
        },
    ),
    "/auth/recording/info": Operation(
        {"record_id": "EG_sV8n2QkUpYbD"},
        {**_OK, "recording_info": _RECORDING, "room_info": _PAST_ROOM},
    ),
    "/auth/recording/delete": Operation({"record_id": "EG_sV8n2QkUpYbD"}, _NOT_HERE),
    "/auth/recording/getDownloadToken": Operation({"record_id": "EG_sV8n2QkUpYbD"}, _NOT_HERE),
    "/webhook": Operation(operation_id="livekitWebhook"),
    "/healthz": Operation(operation_id="healthz"),
    "/readyz": Operation(operation_id="readyz"),
    "/metrics": Operation(operation_id="metrics"),
    "/openapi.json": Operation(operation_id="openapi"),
}


def describe(paths: dict[str, Any]) -> None:
    """Add operationIds and examples to the document's `paths`, in place."""
    for path, item in paths.items():
        op = OPERATIONS.get(path)
        for method in item.values():
            if op is None:
                continue
            if op.operation_id:
                method["operationId"] = op.operation_id
            if op.request is not None and "requestBody" in method:
                content = method["requestBody"]["content"]["application/json"]
                content["examples"] = {"example": {"value": op.request}}
            answer = method["responses"].get(op.answer_code, {})
            if op.answer and "application/json" in answer.get("content", {}):
                answer["content"]["application/json"]["examples"] = {
                    "example": {"value": op.answer}
                }
