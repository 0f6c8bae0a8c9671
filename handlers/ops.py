"""Operational routes without auth: health, readiness, metrics."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from handlers.state import DEPS, DRAINING
from worker import keys
from worker.livekit import LiveKitError
from worker.logs import get_logger
from worker.metrics import (
    ACTIVE_ROOMS,
    BREAKER_OPEN,
    BREAKERS_OPEN,
    DELIVERIES_BY_STATE,
    QUEUE_DEPTH,
    SCHEDULED_ROOMS,
)

log = get_logger("roomkeeper.ops")

READY_TIMEOUT = 2.0


async def healthz(request: web.Request) -> web.Response:
    """The process serves."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Redis and LiveKit answer; 503 names whichever does not."""
    deps = request.app[DEPS]
    if request.app[DRAINING].is_set():
        return web.json_response({"status": "shutting down"}, status=503)
    problems = {}
    try:
        async with asyncio.timeout(READY_TIMEOUT):  # the client would retry for longer
            await deps.redis.ping()
    except Exception as exc:
        problems["redis"] = f"unreachable ({type(exc).__name__})"
    try:
        await deps.livekit.list_rooms(["roomkeeper-readiness-probe"])
    except LiveKitError as exc:
        problems["livekit"] = str(exc)
    if problems:
        return web.json_response({"status": "not ready", "problems": problems}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text; cluster-wide gauges are read from Redis at scrape time."""
    deps = request.app[DEPS]
    try:
        async with deps.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(keys.QUEUED_JOBS)
            pipe.hgetall(keys.DELIVERY_COUNTS)
            pipe.zcard(keys.ACTIVE_ROOMS)
            pipe.zcard(keys.SCHEDULED_BY_START)
            pipe.smembers(keys.HOSTS_OPEN)
            depth, counts, active, scheduled, open_hosts = await pipe.execute()
        QUEUE_DEPTH.set(depth)
        SCHEDULED_ROOMS.set(scheduled)
        ACTIVE_ROOMS.set(active)
        for state in ("pending", "delivered", "dead"):
            DELIVERIES_BY_STATE.labels(state).set(int(counts.get(state, 0)))
        BREAKERS_OPEN.set(len(open_hosts))
        BREAKER_OPEN.clear()  # a host whose breaker closed drops out of the series
        for host in open_hosts:
            BREAKER_OPEN.labels(host).set(1)
    except Exception as exc:  # metrics must render even when Redis is away
        log.warning("metrics without redis figures", error=type(exc).__name__)
    body = generate_latest()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    """Register the operational routes."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
