"""The Twirp endpoint: routing, codecs, errors, RoomService's seven methods and Egress's three.

The request pipeline is ordered like LiveKit's server so failures surface the same way:

1. the auth middleware (bad header or token: plain-text 401, before any routing);
2. Twirp routing: POST only, a known method, a supported Content-Type (else ``bad_route``);
3. body decoding (else ``malformed``);
4. injected faults (emulator only; after decoding so the call log knows the room);
5. the method itself, which checks its grant first (``unauthenticated`` "permissions denied").
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from livekit.protocol import egress as egress_pb
from livekit.protocol import room as room_pb

from .auth import (
    Authenticator,
    AuthError,
    Grants,
    ensure_admin,
    ensure_create,
    ensure_list,
    ensure_record,
)
from .calls import CallLog, CallRecord
from .config import MAX_METADATA_SIZE
from .egress import EgressService
from .errors import TwirpError, invalid_argument
from .faults import Fault, Faults
from .state import State

log = logging.getLogger("emulator.twirp")

PREFIX = "/twirp/livekit."
JSON = "application/json"
PROTOBUF = "application/protobuf"


def to_json_dict(msg: Message) -> dict[str, Any]:
    """A message as Twirp v8 renders JSON: proto field names, defaults included, int64 as str."""
    return json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


# ------------------------------------------------------------------ methods


@dataclass(frozen=True, slots=True)
class Services:
    """What the methods act on."""

    state: State
    egress: EgressService


def _create_room(svc: Services, grants: Grants, req: room_pb.CreateRoomRequest) -> Message:
    ensure_create(grants)
    return svc.state.create_room(
        req.name,
        empty_timeout=req.empty_timeout,
        departure_timeout=req.departure_timeout,
        max_participants=req.max_participants,
        metadata=req.metadata,
    )


def _list_rooms(svc: Services, grants: Grants, req: room_pb.ListRoomsRequest) -> Message:
    ensure_list(grants)
    return room_pb.ListRoomsResponse(rooms=svc.state.list_rooms(req.names))


def _delete_room(svc: Services, grants: Grants, req: room_pb.DeleteRoomRequest) -> Message:
    ensure_create(grants)
    svc.state.delete_room(req.room)
    return room_pb.DeleteRoomResponse()


def _list_participants(
    svc: Services, grants: Grants, req: room_pb.ListParticipantsRequest
) -> Message:
    ensure_admin(grants, req.room)
    return room_pb.ListParticipantsResponse(participants=svc.state.list_participants(req.room))


def _get_participant(
    svc: Services, grants: Grants, req: room_pb.RoomParticipantIdentity
) -> Message:
    ensure_admin(grants, req.room)
    return svc.state.get_participant(req.room, req.identity)


def _remove_participant(
    svc: Services, grants: Grants, req: room_pb.RoomParticipantIdentity
) -> Message:
    ensure_admin(grants, req.room)
    svc.state.remove_participant(req.room, req.identity)
    return room_pb.RemoveParticipantResponse()


def _update_room_metadata(
    svc: Services, grants: Grants, req: room_pb.UpdateRoomMetadataRequest
) -> Message:
    # LiveKit checks the size before the grant, so an oversized update from anyone is
    # invalid_argument rather than unauthenticated.
    if len(req.metadata.encode()) > MAX_METADATA_SIZE:
        raise invalid_argument(f"metadata size exceeds limits: {MAX_METADATA_SIZE}")
    ensure_admin(grants, req.room)
    return svc.state.update_room_metadata(req.room, req.metadata)


def _start_room_composite(
    svc: Services, grants: Grants, req: egress_pb.RoomCompositeEgressRequest
) -> Message:
    ensure_record(grants)
    return svc.egress.start_room_composite(req)


def _stop_egress(svc: Services, grants: Grants, req: egress_pb.StopEgressRequest) -> Message:
    ensure_record(grants)
    return svc.egress.stop(req.egress_id)


def _list_egress(svc: Services, grants: Grants, req: egress_pb.ListEgressRequest) -> Message:
    ensure_record(grants)
    return egress_pb.ListEgressResponse(
        items=svc.egress.list(req.room_name, req.egress_id, req.active)
    )


@dataclass(frozen=True, slots=True)
class Route:
    """How to decode one method's request, find its room, and run it."""

    request_type: type[Message]
    room_of: Callable[[Any], str]
    run: Callable[[Services, Grants, Any], Message]


ROOM_ROUTES: dict[str, Route] = {
    "CreateRoom": Route(room_pb.CreateRoomRequest, lambda r: r.name, _create_room),
    "ListRooms": Route(room_pb.ListRoomsRequest, lambda r: ",".join(r.names), _list_rooms),
    "DeleteRoom": Route(room_pb.DeleteRoomRequest, lambda r: r.room, _delete_room),
    "ListParticipants": Route(
        room_pb.ListParticipantsRequest, lambda r: r.room, _list_participants
    ),
    "GetParticipant": Route(room_pb.RoomParticipantIdentity, lambda r: r.room, _get_participant),
    "RemoveParticipant": Route(
        room_pb.RoomParticipantIdentity, lambda r: r.room, _remove_participant
    ),
    "UpdateRoomMetadata": Route(
        room_pb.UpdateRoomMetadataRequest, lambda r: r.room, _update_room_metadata
    ),
}
EGRESS_ROUTES: dict[str, Route] = {
    "StartRoomCompositeEgress": Route(
        egress_pb.RoomCompositeEgressRequest, lambda r: r.room_name, _start_room_composite
    ),
    "StopEgress": Route(egress_pb.StopEgressRequest, lambda r: "", _stop_egress),
    "ListEgress": Route(egress_pb.ListEgressRequest, lambda r: r.room_name, _list_egress),
}
# Keyed by "<Service>/<Method>", the path after /twirp/livekit.
ROUTES: dict[str, Route] = {
    **{f"RoomService/{m}": r for m, r in ROOM_ROUTES.items()},
    **{f"Egress/{m}": r for m, r in EGRESS_ROUTES.items()},
}


# ------------------------------------------------------------------ transport


def _bad_route(msg: str, request: web.Request) -> TwirpError:
    meta = {"twirp_invalid_route": f"{request.method} {request.path}"}
    return TwirpError("bad_route", msg, meta=meta)


def _decode(route: Route, content_type: str, body: bytes) -> Message:
    msg = route.request_type()
    if content_type == PROTOBUF:
        try:
            msg.ParseFromString(body)
        except DecodeError as exc:
            raise TwirpError("malformed", "failed to parse request proto") from exc
        return msg
    try:
        # Twirp's server discards unknown fields and accepts proto or camelCase names.
        json_format.Parse(body, msg, ignore_unknown_fields=True)
    except (json_format.ParseError, UnicodeDecodeError, ValueError) as exc:
        raise TwirpError("malformed", "the json request could not be decoded") from exc
    return msg


def _encode(msg: Message, content_type: str) -> web.Response:
    if content_type == PROTOBUF:
        return web.Response(body=msg.SerializeToString(), content_type=PROTOBUF)
    body = json.dumps(to_json_dict(msg), separators=(",", ":"), ensure_ascii=False)
    return web.Response(text=body, content_type=JSON)


def _error_response(err: TwirpError, record: CallRecord) -> web.Response:
    record.status = err.status
    record.code = err.code
    return web.Response(status=err.status, body=err.body(), content_type=JSON)


class TwirpService:
    """aiohttp handler for everything under ``/twirp/``."""

    def __init__(
        self,
        state: State,
        egress: EgressService,
        auth: Authenticator,
        calls: CallLog,
        faults: Faults,
    ) -> None:
        self.services = Services(state, egress)
        self.auth = auth
        self.calls = calls
        self.faults = faults

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one Twirp request (any HTTP method, any path under /twirp/)."""
        at = time.time()
        path = request.path
        route_key = path[len(PREFIX) :] if path.startswith(PREFIX) else path
        # Calls are logged and faults matched by method name alone (names are unique).
        method = route_key.split("/", 1)[1] if route_key.count("/") == 1 else route_key
        raw_type = request.headers.get("Content-Type", "")
        content_type = raw_type.split(";", 1)[0].strip().lower()
        record = self.calls.start(method, at, content_type)

        try:
            grants = self.auth.authenticate(request.headers.get("Authorization"))
        except AuthError as exc:
            record.status = 401
            return web.Response(status=401, text=str(exc))

        try:
            if request.method != "POST":
                raise _bad_route(
                    f'unsupported method "{request.method}" (only POST is allowed)', request
                )
            route = ROUTES.get(route_key)
            if route is None:
                raise _bad_route(f'no handler for path "{path}"', request)
            if content_type not in (JSON, PROTOBUF):
                raise _bad_route(f'unexpected Content-Type: "{raw_type}"', request)
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                record.status = 413
                raise
            req = _decode(route, content_type, body)
            record.room = route.room_of(req)
            fault = self.faults.take(method)
            if fault is not None:
                dropped = await self._apply_fault(fault, request, record)
                if dropped is not None:
                    return dropped
            reply = route.run(self.services, grants, req)
        except TwirpError as err:
            return _error_response(err, record)
        except web.HTTPException:
            raise  # aiohttp's own answers, e.g. 413 for an oversized body
        except Exception:
            # An emulator bug must still look like a Twirp server failing, not an HTML 500.
            log.exception("Twirp %s failed", method)
            return _error_response(TwirpError("internal", "internal error"), record)
        record.status = 200
        return _encode(reply, content_type)

    @staticmethod
    async def _apply_fault(
        fault: Fault, request: web.Request, record: CallRecord
    ) -> web.StreamResponse | None:
        """Delay, drop or fail the call; returns a response only when the socket was dropped."""
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.drop_connection:
            # Abort the TCP connection without a response, like a crashed server. Status 0 in
            # the call log marks it; aiohttp silently discards the unused response object.
            transport = request.transport
            if transport is not None:
                transport.abort()
            record.status = 0
            return web.Response()
        if fault.code is not None:
            raise TwirpError(fault.code, fault.msg, status=fault.http_status)
        return None
