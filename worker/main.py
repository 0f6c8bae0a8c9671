"""The worker process: arq runs the create jobs; consumers work the durable schedules.

`WorkerSettings` is arq's way in. Startup opens `Deps` and starts the consumers (timers, on a
thread and loop of their own; LiveKit's inbound events, webhook deliveries, scheduled rooms
falling due); shutdown lets running work finish within the grace period and leaves the rest on
its schedule or queue for other workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Any

from prometheus_client import start_http_server

from worker import keys
from worker.arqueue import (
    ResilientWorker,
    Worker,
    deserialize_job,
    func,
    serialize_job,
    worker_pool,
)
from worker.connections import redis_client
from worker.deps import Deps, open_deps
from worker.logs import configure_logging, get_logger
from worker.loop import run as run_loop
from worker.queue.consumer import run_consumer
from worker.queue.schedule import now_ms
from worker.rooms import jobs, livekit_batch
from worker.rooms.firing import run_firing
from worker.rooms.timers import RECONCILE
from worker.settings import Settings
from worker.timer_thread import TimerThread
from worker.webhooks.engine import Dispatcher
from worker.webhooks.http1 import Pool

log = get_logger("roomkeeper.worker")

HEARTBEAT_S = 5.0


async def startup(ctx: dict[str, Any]) -> None:
    """Open clients and start the schedule consumers."""
    settings: Settings = ctx["settings"]
    deps = await open_deps(settings)
    ctx["deps"] = deps
    stop = asyncio.Event()
    ctx["stop"] = stop
    pool = Pool(settings.webhook_allowed_cidrs, limit=settings.webhook_concurrency)
    ctx["webhook_pool"] = pool
    dispatcher = Dispatcher(deps.redis, settings, pool, deps.deliveries)
    # The first worker up arms reconciliation; later ones find it armed (NX) and leave it.
    async with deps.redis.pipeline(transaction=True) as pipe:
        deps.timers.add(pipe, RECONCILE, now_ms() + int(settings.reconcile_interval * 1000))
        await pipe.execute()
    # Timers first, on their own thread: a due timer does not wait behind this loop's work.
    timers = ctx["timer_thread"] = TimerThread(settings)  # recorded first: shutdown stops it
    await timers.start()
    waiters = [redis_client(settings) for _ in range(4)]
    ctx["waiters"] = waiters
    grace = settings.shutdown_grace
    ctx["consumers"] = [
        asyncio.create_task(
            run_consumer(
                deps.inbound,
                lambda c: livekit_batch.work(deps, c),
                waiter=waiters[1],
                stop=stop,
                concurrency=64,
                grace=grace,
            )
        ),
        asyncio.create_task(
            run_consumer(
                dispatcher.schedule,
                dispatcher.work,
                waiter=waiters[2],
                stop=stop,
                concurrency=settings.webhook_concurrency,
                grace=grace,
            )
        ),
    ]
    ctx["consumers"].append(asyncio.create_task(run_firing(deps, waiter=waiters[3], stop=stop)))
    ctx["consumers"].append(
        asyncio.create_task(_heartbeat(ctx, Path(settings.worker_health_file), stop))
    )
    log.info("worker started", queue=keys.QUEUE_NAME)


async def shutdown(ctx: dict[str, Any]) -> None:
    """Stop the consumers (running work gets the grace period) and close clients."""
    stop: asyncio.Event | None = ctx.get("stop")
    if stop is not None:
        stop.set()
        await asyncio.gather(*ctx.get("consumers", []), return_exceptions=True)
    timers: TimerThread | None = ctx.get("timer_thread")
    if timers is not None:
        await timers.stop()
    for waiter in ctx.get("waiters", []):
        with contextlib.suppress(Exception):
            await waiter.aclose()
    if "webhook_pool" in ctx:
        await ctx["webhook_pool"].close()
    deps: Deps | None = ctx.get("deps")
    if deps is not None:
        await deps.aclose()
    log.info("worker stopped")


def worker_settings(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `arq.Worker` built from roomkeeper's settings."""
    return {
        "functions": [func(jobs.create_rooms, name=jobs.CREATE_ROOMS, max_tries=1000)],
        "queue_name": keys.QUEUE_NAME,
        "redis_pool": worker_pool(settings),
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"settings": settings},
        "max_jobs": settings.worker_max_jobs,
        "job_timeout": settings.job_timeout,
        "keep_result": 0,
        "poll_delay": 0.05,
        "job_serializer": serialize_job,
        "job_deserializer": deserialize_job,
        "health_check_key": keys.WORKER_HEALTH,
        "health_check_interval": 10,
    }


async def _heartbeat(ctx: dict[str, Any], path: Path, stop: asyncio.Event) -> None:
    """Touch the health file while this worker can reach Redis (the container probe reads it)."""
    deps: Deps = ctx["deps"]
    while not stop.is_set():
        try:
            await deps.redis.ping()
            await asyncio.to_thread(path.write_text, f"{time.time():.0f}\n")
        except Exception as exc:
            log.warning("heartbeat failed", error=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HEARTBEAT_S)


def check_health(health_file: str) -> int:
    """0 when this machine's worker touched its health file recently, else 1 (a probe)."""
    path = Path(health_file)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        print(f"unhealthy: {path} does not exist (no worker running here?)")
        return 1
    if age > HEARTBEAT_S * 3:
        print(f"unhealthy: last heartbeat {age:.0f} s ago")
        return 1
    print(f"healthy: last heartbeat {age:.0f} s ago")
    return 0


def run(settings: Settings) -> int:
    """Run a worker until SIGINT/SIGTERM, then shut down gracefully."""
    configure_logging(settings.log_level, settings.log_format)
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port)
    run_loop(_run(settings), settings.event_loop)
    return 0


async def _run(settings: Settings) -> None:
    worker = ResilientWorker(**worker_settings(settings), handle_signals=False)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    main = asyncio.create_task(worker.async_run())
    waiter = asyncio.create_task(stopping.wait())
    await asyncio.wait({main, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if main.done():
        waiter.cancel()
        await main  # startup failed: let the error show
        return
    log.info("worker stopping", grace_s=settings.shutdown_grace)
    await stop_worker(worker, main, settings.shutdown_grace)


async def stop_worker(worker: Worker, main: asyncio.Task[None], grace: float) -> None:
    """Stop taking new work everywhere; what is running gets `grace` seconds, the rest stays
    queued (arq) or scheduled (consumers) for other workers. `main` runs `worker.async_run()`."""
    worker.allow_pick_jobs = False
    main.cancel()  # the poll loop: no job starts after this
    with contextlib.suppress(asyncio.CancelledError):
        await main
    stop: asyncio.Event | None = worker.ctx.get("stop")
    if stop is not None:
        stop.set()
    running = [t for t in worker.tasks.values() if not t.done()]
    if running:
        _, late = await asyncio.wait(running, timeout=grace)
        for task in late:  # arq puts a cancelled job back on the queue at once
            task.cancel()
        # Awaited before the pool closes: a cancelled job still releases its connections.
        await asyncio.gather(*late, return_exceptions=True)
    worker.tasks.clear()
    await worker.close()
