"""The ``/_emulator/`` control API: act as clients would, inspect traffic, inject faults.

No authentication (it is a development tool bound to localhost) and plain JSON everywhere;
errors are ``{"error": "..."}`` with a meaningful HTTP status.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from livekit.protocol import egress as egress_pb
from livekit.protocol import models

from .calls import CallLog
from .config import EmulatorConfig
from .egress import EgressService
from .errors import TwirpError
from .faults import Fault, Faults, FaultSpecError
from .state import State
from .twirp import to_json_dict
from .webhooks import WebhookSender

PREFIX = "/_emulator"

# How state errors surface here: a full room or a duplicate identity is a conflict.
_STATUS_FOR_CODE = {
    "not_found": 404,
    "already_exists": 409,
    "resource_exhausted": 409,
    "invalid_argument": 400,
    "failed_precondition": 409,
}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _from_state_error(err: TwirpError) -> web.Response:
    return _error(_STATUS_FOR_CODE.get(err.code, err.status), err.msg)


async def _body(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (an empty body is ``{}``)."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise web.HTTPBadRequest(
            text=_dumps({"error": f"invalid JSON: {exc}"}), content_type="application/json"
        ) from exc
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(
            text=_dumps({"error": "body must be a JSON object"}), content_type="application/json"
        )
    return data


def _enum_value(enum: Any, value: Any, field: str) -> int:
    """Map an enum name such as ``"AGENT"`` to its number, or raise a 400."""
    if isinstance(value, str):
        try:
            return int(enum.Value(value.upper()))
        except ValueError:
            pass
    raise web.HTTPBadRequest(
        text=_dumps({"error": f"invalid {field}: {value!r}"}), content_type="application/json"
    )


def _str_field(data: dict[str, Any], key: str, default: str = "") -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise web.HTTPBadRequest(
            text=_dumps({"error": f"{key} must be a string"}), content_type="application/json"
        )
    return value


class ControlAPI:
    """Handlers for ``/_emulator/*``; holds references to the live components."""

    def __init__(
        self,
        config: EmulatorConfig,
        state: State,
        calls: CallLog,
        faults: Faults,
        webhooks: WebhookSender,
        egress: EgressService,
    ) -> None:
        self.egress = egress
        self.config = config
        self.state = state
        self.calls = calls
        self.faults = faults
        self.webhooks = webhooks

    def add_routes(self, app: web.Application) -> None:
        """Register every control route on ``app``."""
        p = PREFIX
        app.router.add_get(f"{p}/health", self.health)
        app.router.add_get(f"{p}/stats", self.stats)
        app.router.add_get(f"{p}/rooms", self.list_rooms)
        app.router.add_get(f"{p}/rooms/{{room}}", self.get_room)
        app.router.add_post(f"{p}/rooms/{{room}}/participants", self.join)
        app.router.add_delete(f"{p}/rooms/{{room}}/participants/{{identity}}", self.leave)
        app.router.add_post(f"{p}/rooms/{{room}}/participants/{{identity}}/tracks", self.publish)
        app.router.add_delete(
            f"{p}/rooms/{{room}}/participants/{{identity}}/tracks/{{track}}", self.unpublish
        )
        app.router.add_get(f"{p}/calls", self.list_calls)
        app.router.add_delete(f"{p}/calls", self.clear_calls)
        app.router.add_get(f"{p}/webhooks", self.list_webhooks)
        app.router.add_delete(f"{p}/webhooks", self.clear_webhooks)
        app.router.add_get(f"{p}/config", self.get_config)
        app.router.add_post(f"{p}/config", self.set_config)
        app.router.add_get(f"{p}/faults", self.list_faults)
        app.router.add_post(f"{p}/faults", self.add_fault)
        app.router.add_delete(f"{p}/faults", self.clear_faults)
        app.router.add_post(f"{p}/reset", self.reset)
        app.router.add_get(f"{p}/egress", self.list_egress)
        app.router.add_post(f"{p}/egress/fail-next", self.egress_fail_next)
        app.router.add_post(f"{p}/egress/{{egress_id}}/end", self.end_egress)

    # ----------------------------------------------------------- inspection

    async def health(self, request: web.Request) -> web.Response:
        """``{"ok": true}`` once the server is up."""
        return _json({"ok": True})

    async def stats(self, request: web.Request) -> web.Response:
        """Room count, calls per method, webhook totals."""
        counters = self.webhooks.counters
        return _json(
            {
                "rooms": len(self.state.rooms),
                "calls": dict(self.calls.counts),
                "webhooks_sent": counters.sent,
                "webhooks_failed": counters.failed,
                "webhooks_dropped": counters.dropped,
            }
        )

    def _room_dict(self, name: str) -> dict[str, Any]:
        entry = self.state.get_room(name)
        data = to_json_dict(entry.proto)
        data["participants"] = [to_json_dict(p) for p in entry.participants.values()]
        return data

    async def list_rooms(self, request: web.Request) -> web.Response:
        """Every room with its participants."""
        return _json({"rooms": [self._room_dict(name) for name in list(self.state.rooms)]})

    async def get_room(self, request: web.Request) -> web.Response:
        """One room with its participants, or 404."""
        try:
            return _json(self._room_dict(request.match_info["room"]))
        except TwirpError as err:
            return _from_state_error(err)

    async def list_calls(self, request: web.Request) -> web.Response:
        """Received RoomService calls, optionally ``?method=`` / ``?room=`` filtered."""
        q = request.query
        calls = self.calls.list(q.get("method"), q.get("room"))
        return _json({"calls": [c.to_dict() for c in calls]})

    async def clear_calls(self, request: web.Request) -> web.Response:
        """Forget received calls."""
        self.calls.clear()
        return _json({"ok": True})

    async def list_webhooks(self, request: web.Request) -> web.Response:
        """Webhook deliveries, optionally ``?event=`` / ``?room=`` filtered."""
        q = request.query
        records = self.webhooks.list_records(q.get("event"), q.get("room"))
        return _json({"webhooks": [r.to_dict() for r in records]})

    async def clear_webhooks(self, request: web.Request) -> web.Response:
        """Forget webhook records (queued deliveries still go out)."""
        self.webhooks.clear_records()
        return _json({"ok": True})

    # -------------------------------------------------------------- clients

    async def join(self, request: web.Request) -> web.Response:
        """A participant connects to the room."""
        data = await _body(request)
        identity = data.get("identity")
        if not isinstance(identity, str) or not identity:
            return _error(400, "identity is required")
        kind = _enum_value(models.ParticipantInfo.Kind, data.get("kind", "STANDARD"), "kind")
        try:
            participant = self.state.join(
                request.match_info["room"],
                identity,
                name=_str_field(data, "name"),
                metadata=_str_field(data, "metadata"),
                kind=kind,
            )
        except TwirpError as err:
            return _from_state_error(err)
        return _json({"participant": to_json_dict(participant)})

    async def leave(self, request: web.Request) -> web.Response:
        """A participant disconnects on its own (reason CLIENT_INITIATED)."""
        try:
            participant = self.state.leave(
                request.match_info["room"], request.match_info["identity"]
            )
        except TwirpError as err:
            return _from_state_error(err)
        return _json({"participant": to_json_dict(participant)})

    async def publish(self, request: web.Request) -> web.Response:
        """A participant publishes an audio or video track."""
        data = await _body(request)
        track_type = _enum_value(models.TrackType, data.get("type"), "type")
        if track_type not in (models.AUDIO, models.VIDEO):
            return _error(400, "type must be AUDIO or VIDEO")
        source = None
        if "source" in data:
            source = _enum_value(models.TrackSource, data["source"], "source")
        try:
            track = self.state.publish_track(
                request.match_info["room"],
                request.match_info["identity"],
                track_type=track_type,
                name=_str_field(data, "name"),
                source=source,
            )
        except TwirpError as err:
            return _from_state_error(err)
        return _json({"track": to_json_dict(track)})

    async def unpublish(self, request: web.Request) -> web.Response:
        """A participant stops publishing a track."""
        m = request.match_info
        try:
            track = self.state.unpublish_track(m["room"], m["identity"], m["track"])
        except TwirpError as err:
            return _from_state_error(err)
        return _json({"track": to_json_dict(track)})

    # ------------------------------------------------------- configuration

    async def get_config(self, request: web.Request) -> web.Response:
        """The current configuration (secret omitted)."""
        return _json(self.config.public_dict())

    async def set_config(self, request: web.Request) -> web.Response:
        """Apply any of webhook_urls / tick_interval / departure_timeout (and a few more)."""
        data = await _body(request)
        try:
            _apply_config(self.config, data)
        except ValueError as exc:
            return _error(400, str(exc))
        return _json(self.config.public_dict())

    async def list_faults(self, request: web.Request) -> web.Response:
        """Pending faults in the order they will apply."""
        return _json({"faults": [f.to_dict() for f in self.faults.list()]})

    async def add_fault(self, request: web.Request) -> web.Response:
        """Queue a fault for upcoming RoomService calls."""
        try:
            fault = Fault.from_json(await _body(request))
        except FaultSpecError as exc:
            return _error(400, str(exc))
        self.faults.add(fault)
        return _json({"fault": fault.to_dict()})

    async def clear_faults(self, request: web.Request) -> web.Response:
        """Remove every pending fault."""
        self.faults.clear()
        return _json({"ok": True})

    # ---------------------------------------------------------------- egress

    async def list_egress(self, request: web.Request) -> web.Response:
        """Every egress, optionally ``?room=`` filtered."""
        infos = self.egress.list(room_name=request.query.get("room", ""))
        return _json({"egress": [to_json_dict(i) for i in infos]})

    async def egress_fail_next(self, request: web.Request) -> web.Response:
        """The next started egress fails at once (``egress_ended`` EGRESS_FAILED with ``error``).

        To refuse the StartRoomCompositeEgress call itself, queue a fault for that method.
        """
        data = await _body(request)
        error = _str_field(data, "error", "egress failed to start")
        self.egress.fail_next.append(error or "egress failed to start")
        return _json({"fail_next": list(self.egress.fail_next)})

    async def end_egress(self, request: web.Request) -> web.Response:
        """End an egress now with ``status`` (default EGRESS_FAILED) and ``error``."""
        data = await _body(request)
        status = _enum_value(egress_pb.EgressStatus, data.get("status", "EGRESS_FAILED"), "status")
        if status not in (
            egress_pb.EGRESS_COMPLETE,
            egress_pb.EGRESS_FAILED,
            egress_pb.EGRESS_ABORTED,
            egress_pb.EGRESS_LIMIT_REACHED,
        ):
            return _error(400, "status must be a final egress status")
        try:
            info = self.egress.end(
                request.match_info["egress_id"], status, _str_field(data, "error")
            )
        except TwirpError as err:
            return _from_state_error(err)
        return _json({"egress": to_json_dict(info)})

    async def reset(self, request: web.Request) -> web.Response:
        """Forget rooms, egress, calls, webhooks (queued ones included) and faults; keep config."""
        self.state.clear()
        self.egress.clear()
        self.calls.clear()
        self.faults.clear()
        await self.webhooks.clear()
        return _json({"ok": True})


def _apply_config(config: EmulatorConfig, data: dict[str, Any]) -> None:
    """Validate everything first, then assign, so a bad request changes nothing."""
    updates: dict[str, Any] = {}
    for key, value in data.items():
        if key == "webhook_urls":
            if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
                raise ValueError("webhook_urls must be a list of strings")
            updates[key] = list(value)
        elif key in (
            "tick_interval",
            "webhook_retry_backoff",
            "webhook_retry_backoff_max",
            "webhook_timeout",
            "webhook_max_age",
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{key} must be a positive number")
            updates[key] = float(value)
        elif key in ("departure_timeout", "default_empty_timeout"):
            # 0 is meaningful here (close as soon as the timer is checked), as on LiveKit.
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key} must be a non-negative integer")
            updates[key] = value
        elif key in ("webhook_max_attempts", "webhook_max_depth"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer")
            updates[key] = value
        else:
            raise ValueError(f"unknown or read-only config key {key!r}")
    for key, value in updates.items():
        setattr(config, key, value)
