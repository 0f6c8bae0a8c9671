"""Console pages with a big delivery log: the time to render each page with 100,000 deliveries
(1 % dead, 200 hosts) against the same page with an empty log, and against `/healthz`.

`roomkeeper api` runs as its own process against a real redis-server; the log is written as the
worker's producers write it (`Outbox.emit`), the dead ones moved the way a settle does. No
worker runs, so nothing changes while the pages are timed. `--quick` uses 10,000 deliveries.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid

import aiohttp
from redis.asyncio import Redis

from bench.common import percentile, report
from tests.support.api import API_KEY, API_SECRET, LK_KEY, LK_SECRET, WEBHOOK_SECRET
from tests.support.delivery import room_object
from tests.support.procs import roomkeeper_env
from tests.support.servers import Process, RedisServer, free_port, roomkeeper_cmd, wait_for_port
from worker import keys
from worker.settings import Settings
from worker.webhooks.bodies import notify_body
from worker.webhooks.engine import Outbox, delivery_schedule

PAGES = (
    "/console/",
    "/console/rooms",
    "/console/deliveries",
    "/console/deliveries?state=dead",
    "/console/deliveries?state=delivered",
    "/console/hosts",
)
SAMPLES = 30


async def fill(redis: Redis, settings: Settings, total: int) -> None:
    """`total` deliveries over 1,000 rooms and 200 hosts; every 100th one dead."""
    outbox = Outbox(settings, delivery_schedule(redis, settings))
    batch = 1000
    for start in range(0, total, batch):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(total, start + batch)):
                room = f"room{i % 1000:04d}"
                event_id = str(uuid.uuid4())
                body = notify_body("participant_joined", room_object(room), event_id=event_id)
                outbox.emit(
                    pipe,
                    event_id=event_id,
                    event="participant_joined",
                    room_id=room,
                    body=body,
                    room_webhook_url=f"https://lms{i % 200}.example.org/hook",
                    wake=False,
                )
            await pipe.execute()
    dead = await redis.zrange(keys.deliveries_in_state("pending"), 0, -1)
    async with redis.pipeline(transaction=False) as pipe:
        for did in dead[::100]:
            pipe.hset(keys.delivery(did), mapping={"state": "dead", "reason": "bench"})
            pipe.zrem(keys.deliveries_in_state("pending"), did)
            pipe.zadd(keys.deliveries_in_state("dead"), {did: 0})
        for host in range(200):
            pipe.zadd(keys.HOSTS, {f"https://lms{host}.example.org:443": time.time() * 1000})
        await pipe.execute()


async def timings(url: str, path: str) -> list[float]:
    auth = {"Authorization": aiohttp.encode_basic_auth(API_KEY, API_SECRET)}
    out = []
    async with aiohttp.ClientSession(headers=auth) as http:
        for _ in range(SAMPLES):
            began = time.perf_counter()
            async with http.get(f"{url}{path}") as resp:
                await resp.read()
                assert resp.status == 200, (path, resp.status)
            out.append((time.perf_counter() - began) * 1000)
    return out


async def measure(url: str) -> dict[str, float]:
    return {p: percentile(await timings(url, p), 50) for p in ("/healthz", *PAGES)}


async def main(total: int) -> None:
    redis_server = RedisServer()
    redis_server.start()
    port = free_port()
    env = roomkeeper_env(redis_server.url, "http://127.0.0.1:9", ROOMKEEPER_LOG_LEVEL="warning")
    api = Process(roomkeeper_cmd("api", "--port", str(port)), env, "bench-api").start()
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}"
        empty = await measure(url)
        settings = Settings(
            _env_file=None,
            livekit_api_key=LK_KEY,
            livekit_api_secret=LK_SECRET,
            api_key=API_KEY,
            api_secret=API_SECRET,
            webhook_secret=WEBHOOK_SECRET,
            redis_url=redis_server.url,
        )
        began = time.perf_counter()
        await fill(redis, settings, total)
        filled = time.perf_counter() - began
        full = await measure(url)
        rows = [(f"log written ({total} deliveries)", f"{filled:.1f} s")]
        for path in ("/healthz", *PAGES):
            rows.append(
                (
                    f"{path} p50",
                    f"empty {empty[path]:6.1f} ms   full {full[path]:6.1f} ms   "
                    f"ratio {full[path] / empty[path]:.2f}",
                )
            )
        report(f"console pages, {SAMPLES} GETs each, {total} deliveries in the log", rows)
    finally:
        await redis.aclose()
        api.stop()
        redis_server.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(10_000 if args.quick else 100_000))
    sys.exit(0)
