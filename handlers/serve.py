"""Serving the API, and stopping it without dropping what was accepted.

SIGTERM (an orchestrator's stop): `/readyz` turns 503 at once so load balancers stop routing
here, the listener stays open for `ROOMKEEPER_SHUTDOWN_DRAIN` seconds while they notice, then
closes; requests in flight get `ROOMKEEPER_SHUTDOWN_GRACE` seconds to finish. SIGINT (Ctrl-C at a
terminal) skips the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal

from aiohttp import web

from handlers.app import create_app
from handlers.state import DRAINING
from worker.logs import get_logger
from worker.settings import Settings

log = get_logger("roomkeeper.api")

# Net container allocations between two young collections (CPython's default is 700). Requests
# in flight each hold some fifty containers, so at 700 the collector ran every dozen requests,
# promoting what they held into the older generations and from there into full collections:
# about 45 µs per create under load. Nearly everything a request allocates is freed by
# reference counting: at this threshold `bench.create` saw no young collection in six seconds
# (gc.callbacks), against some 700 at the default.
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Prepare the collector for serving: start-up's objects (modules, the app, its clients)
    live as long as the process, so they are frozen out of every later collection instead of
    being walked by each full one; young collections run less often (`GC_YOUNG_THRESHOLD`)."""
    gc.collect()  # start-up's garbage is freed, not frozen
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


async def serve(settings: Settings, host: str, port: int) -> None:
    """Serve until a signal, then drain and shut down."""
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.shutdown_grace)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    tune_gc()
    print(f"roomkeeper API listening on http://{host}:{port}", flush=True)
    received: asyncio.Queue[signal.Signals] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, received.put_nowait, sig)
    sig = await received.get()
    app[DRAINING].set()
    drain = settings.shutdown_drain if sig == signal.SIGTERM else 0.0
    log.info("api stopping", signal=sig.name, drain_s=drain, grace_s=settings.shutdown_grace)
    if drain > 0:
        with contextlib.suppress(TimeoutError):  # a second signal cuts the drain short
            await asyncio.wait_for(received.get(), drain)
    await runner.cleanup()
    log.info("api stopped")
