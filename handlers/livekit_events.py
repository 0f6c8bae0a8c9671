"""`POST /webhook`: LiveKit's signed events, verified over the raw body, filed for workers."""

from __future__ import annotations

from aiohttp import web
from google.protobuf.json_format import ParseError
from livekit import api

from handlers.livekit_verify import Refused, verifier
from handlers.state import DEPS, INBOX, LOG_FIELDS, SETTINGS
from worker import keys
from worker.logs import get_logger
from worker.protoread import parse_json
from worker.replicas import NotReplicated
from worker.rooms.inbox import room_of

log = get_logger("roomkeeper.livekit_events")


def _unauthorized(reason: str) -> web.Response:
    return web.Response(status=401, text=f"unauthorized: {reason}\n")


async def receive(request: web.Request) -> web.Response:
    """Verify LiveKit's JWT (`Bearer ` allowed) over the body's SHA-256, then queue the event."""
    settings = request.app[SETTINGS]
    # aiohttp's own limit is createBulk's (see handlers.routes); an event is held to a single
    # route's, before anything is read.
    limit = settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return web.Response(status=413, text=f"body is larger than {limit} bytes\n")
    raw = await request.read()
    if len(raw) > limit:
        return web.Response(status=413, text=f"body is larger than {limit} bytes\n")
    token = request.headers.get("Authorization", "")
    if not token:
        return _unauthorized("missing Authorization header")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return web.Response(status=400, text="body is not valid UTF-8\n")
    check = verifier(settings.livekit_api_key, settings.livekit_api_secret.get_secret_value())
    try:
        check.verify(raw, token.removeprefix("Bearer "))
    except Refused as exc:
        log.warning("livekit webhook refused", reason=exc.reason)
        return _unauthorized("signature does not verify")
    try:
        # Parsed once, here: the workers get the message (`encode_event`), not the JSON.
        event = parse_json(text, api.WebhookEvent)
    except ParseError as exc:  # signed by LiveKit's key, yet not an event: refuse, don't retry
        return web.Response(status=400, text=f"not a LiveKit webhook event: {exc}\n")
    request[LOG_FIELDS] = {
        "lk_event": event.event,
        "lk_event_id": event.id,
        "room_id": room_of(event),
    }
    if not event.id or not room_of(event):
        log.info("livekit event without id or room ignored", lk_event=event.event)
        return web.Response(text="ignored\n")
    fresh = await request.app[INBOX].accept(event)
    deps = request.app[DEPS]
    try:
        await deps.replicas.confirm(deps.redis, [keys.lk_event_seen(event.id)])
    except NotReplicated as exc:  # LiveKit retries a 5xx; the retry finds the event seen
        return web.Response(status=503, text=f"{exc.msg}\n")
    return web.Response(text="ok\n" if fresh else "duplicate\n")


def setup(app: web.Application) -> None:
    """Register LiveKit's webhook route."""
    app.router.add_post("/webhook", receive)
