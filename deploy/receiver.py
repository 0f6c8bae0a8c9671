"""A demo webhook receiver for deploy/docker-compose.yml: one line per event, signatures checked.

It verifies what a real integrator would: the plugNmeet/LiveKit JWT (`Authorization`, keyed by
ROOMKEEPER_API_KEY/ROOMKEEPER_API_SECRET) and the Standard Webhooks signature (keyed by the first
ROOMKEEPER_WEBHOOK_SECRET). It answers 200 either way, so a bad signature shows in the log instead
of being retried. Run: `python receiver.py --port 8099` with those three variables set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

from aiohttp import web
from livekit import api
from standardwebhooks import Webhook


def describe(
    body: bytes, headers: dict[str, str], verifier: api.WebhookReceiver, standard: Webhook
) -> str:
    """The log line for one delivery: event, room, id and the verdict on each signature."""
    checks = []
    try:
        verifier.receive(body.decode(), headers.get("Authorization", ""))
        checks.append("jwt ok")
    except Exception as exc:  # the SDK raises plain Exception/jwt errors for every failure
        checks.append(f"jwt FAILED ({type(exc).__name__})")
    try:
        standard.verify(body, headers)
        checks.append("standard-webhooks ok")
    except Exception as exc:
        checks.append(f"standard-webhooks FAILED ({type(exc).__name__})")
    try:
        event = json.loads(body)
    except ValueError:
        event = {}
    room = event.get("room") or {}
    return (
        f"[receiver] {event.get('event')} room={room.get('room_id')} sid={room.get('sid')} "
        f"id={event.get('id')} ({', '.join(checks)})"
    )


def make_app(
    api_key: str, api_secret: str, webhook_secret: str, emit: Callable[[str], None]
) -> web.Application:
    """The receiver: every POST is checked, described through `emit` and answered 200."""
    verifier = api.WebhookReceiver(api.TokenVerifier(api_key, api_secret))
    standard = Webhook(webhook_secret.split(",")[0].strip())

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        emit(describe(body, dict(request.headers), verifier, standard))
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    return app


def main() -> None:
    """Serve until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - it runs in its own container
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    try:
        app = make_app(
            os.environ["ROOMKEEPER_API_KEY"],
            os.environ["ROOMKEEPER_API_SECRET"],
            os.environ["ROOMKEEPER_WEBHOOK_SECRET"],
            lambda line: print(line, flush=True),
        )
    except KeyError as exc:
        sys.exit(f"receiver: {exc.args[0]} must be set")
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        access_log=None,
        print=lambda _: print(f"[receiver] listening on port {args.port}", flush=True),
    )


if __name__ == "__main__":
    main()
