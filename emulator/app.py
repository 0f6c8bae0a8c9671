"""Assemble the emulator as an aiohttp application."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from .auth import Authenticator
from .calls import CallLog
from .config import EmulatorConfig
from .control import ControlAPI
from .egress import EgressService
from .faults import Faults
from .state import State
from .ticker import run_ticker
from .twirp import TwirpService
from .webhooks import WebhookSender

# Typed application keys (aiohttp warns about plain string keys).
CONFIG_KEY = web.AppKey("emulator_config", EmulatorConfig)
STATE_KEY = web.AppKey("emulator_state", State)
CALLS_KEY = web.AppKey("emulator_calls", CallLog)
FAULTS_KEY = web.AppKey("emulator_faults", Faults)
WEBHOOKS_KEY = web.AppKey("emulator_webhooks", WebhookSender)
EGRESS_KEY = web.AppKey("emulator_egress", EgressService)

# Room metadata may be 512 KiB; leave room for JSON escaping so oversize requests reach the
# size check (invalid_argument, like LiveKit) instead of aiohttp's 413.
MAX_REQUEST_BODY = 4 * 1024 * 1024


def create_app(config: EmulatorConfig) -> web.Application:
    """A ready-to-run application; background tasks start and stop with it (cleanup_ctx)."""
    webhooks = WebhookSender(config)
    state = State(config, webhooks)
    egress = EgressService(state, webhooks)
    calls = CallLog(config.max_records)
    faults = Faults()
    auth = Authenticator(config.api_key, config.api_secret)
    twirp = TwirpService(state, egress, auth, calls, faults)

    app = web.Application(client_max_size=MAX_REQUEST_BODY)
    app[CONFIG_KEY] = config
    app[STATE_KEY] = state
    app[CALLS_KEY] = calls
    app[FAULTS_KEY] = faults
    app[WEBHOOKS_KEY] = webhooks
    app[EGRESS_KEY] = egress

    # Every method and path under /twirp/ reaches the Twirp handler, so wrong methods and
    # unknown services get Twirp's bad_route instead of aiohttp's generic 404/405.
    app.router.add_route("*", "/twirp/{tail:.*}", twirp.handle)
    ControlAPI(config, state, calls, faults, webhooks, egress).add_routes(app)
    app.cleanup_ctx.append(_background)
    return app


async def _background(app: web.Application) -> AsyncIterator[None]:
    webhooks = app[WEBHOOKS_KEY]
    await webhooks.start()
    ticker = asyncio.get_running_loop().create_task(
        run_ticker(app[STATE_KEY], app[CONFIG_KEY]), name="emulator-ticker"
    )
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        await webhooks.stop()
