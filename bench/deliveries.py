"""Webhook delivery: throughput and event-to-receipt latency, against a bare client in the same run.

Everything runs as its own process on this machine: redis-server, a fast receiver (a bare aiohttp
handler that answers 200 and notes when each event arrived), a real `roomkeeper worker`, and, for
the baselines, a bare aiohttp client POST loop. Events are emitted into Redis with `Outbox.emit`
in a transaction each (as the worker's own producers do), carrying their emit time in the body.

(a) throughput: N events spread over many rooms (queues run in parallel) → deliveries/s, against
    the bare client POSTing the same bodies to the same receiver at the same concurrency; and one
    room (strictly ordered, one at a time) against the bare client at concurrency 1.
(b) latency: a steady 100 events/s → emit-to-receipt p50/p99, against the bare client's
    start-of-POST-to-receipt at the same rate.

    .venv/bin/python -m bench.deliveries [--quick] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from bench.common import cpu_s, helper_server
from tests.support.api import API_KEY, API_SECRET, LK_KEY, LK_SECRET, WEBHOOK_SECRET
from tests.support.procs import roomkeeper_env
from tests.support.servers import Process, RedisServer
from worker import keys
from worker.connections import redis_client
from worker.queue.schedule import Schedule
from worker.settings import Settings
from worker.webhooks.bodies import notify_body
from worker.webhooks.engine import SCHEDULE_NAME, Outbox

# --- the receiver (its own process) ------------------------------------------------------------


def serve_receiver(port: int) -> None:
    """Answer every POST with 200; per phase, count arrivals, note latency and order."""
    counts: dict[str, int] = defaultdict(int)
    latencies: dict[str, list[float]] = defaultdict(list)
    last_seq: dict[tuple[str, str], int] = {}
    disorder: dict[str, int] = defaultdict(int)
    last_at: dict[str, float] = defaultdict(float)

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        arrived = time.time()
        phase = request.match_info["phase"]
        event = json.loads(body)
        counts[phase] += 1
        last_at[phase] = arrived
        latencies[phase].append(arrived - float(event["emitted"]))
        room = event["room"]["room_id"]
        seq = int(event["seq"])
        if seq < last_seq.get((phase, room), -1):
            disorder[phase] += 1
        last_seq[(phase, room)] = seq
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        phase = request.match_info["phase"]
        return web.json_response(
            {
                "count": counts[phase],
                "last_at": last_at[phase],
                "latencies": latencies[phase] if "latencies" in request.query else [],
                "disorder": disorder[phase],
            }
        )

    app = web.Application()
    app.router.add_post("/bench/{phase}", hook)
    app.router.add_get("/_stats/{phase}", stats)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# --- the bare client baseline (its own process) ------------------------------------------------


def event_body(room_id: str, seq: int, pad: str) -> bytes:
    """An event body like the worker's, with its emit time."""
    room = {
        "sid": f"RM_{room_id}",
        "room_id": room_id,
        "empty_timeout": 1800,
        "max_participants": 0,
        "creation_time": str(int(time.time())),
        "enabled_codecs": [{"mime": "audio/opus", "fmtp_line": ""}],
        "metadata": pad,
        "num_participants": 0,
    }
    return notify_body(
        "participant_joined",
        room,
        event_id=str(uuid.uuid4()),
        extra={"seq": seq, "emitted": time.time()},
    )


PAD = json.dumps({"room_title": "bench room", "room_features": {"allow_webcams": True}})


async def bare_client(
    url: str, *, concurrency: int, count: int, rooms: int, rate: float
) -> dict[str, Any]:
    """POST `count` bodies with `concurrency` in flight (or paced at `rate`/s when > 0)."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Content-Type": "application/json", "User-Agent": "bare"}
    next_index = 0
    start = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(i: int) -> None:
            body = event_body(f"r{i % rooms}", i // rooms, PAD)
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                assert resp.status == 200, resp.status

        async def worker() -> None:
            nonlocal next_index
            while next_index < count:
                i, next_index = next_index, next_index + 1
                await post(i)

        if rate > 0:
            tasks = []
            for i in range(count):
                await _sleep_until(start + i / rate)
                tasks.append(asyncio.create_task(post(i)))
            await asyncio.gather(*tasks)
        else:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    return {"count": count, "seconds": seconds, "rate": count / seconds}


async def _sleep_until(when: float) -> None:
    delay = when - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


def run_bare_client(url: str, **kwargs: Any) -> dict[str, Any]:
    """The bare client as a separate process (it must not share a loop with anything)."""
    args = [sys.executable, "-m", "bench.deliveries", "--bare-client", url]
    for key, value in kwargs.items():
        args += [f"--{key}", str(value)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# --- roomkeeper ---------------------------------------------------------------------------------


def settings_for(redis_url: str) -> Settings:
    """Producer-side settings (the emitter only needs the schedule and retention)."""
    return Settings(
        _env_file=None,
        livekit_api_key=LK_KEY,
        livekit_api_secret=LK_SECRET,
        api_key=API_KEY,
        api_secret=API_SECRET,
        redis_url=redis_url,
        webhook_secret=WEBHOOK_SECRET,
    )


@contextlib.asynccontextmanager
async def worker(redis: RedisServer, concurrency: int) -> AsyncIterator[Process]:
    """A real `roomkeeper worker`, ready before the block starts."""
    env = roomkeeper_env(
        redis.url,
        "http://127.0.0.1:9",  # LiveKit is not needed for deliveries
        ROOMKEEPER_WEBHOOK_CONCURRENCY=str(concurrency),
        ROOMKEEPER_WEBHOOK_TIMEOUT="15",
        # The engine's throughput against one receiver, not the per-host cap that protects it.
        ROOMKEEPER_WEBHOOK_HOST_RPS="0",
        ROOMKEEPER_RECONCILE_INTERVAL="3600",
    )
    proc = Process([sys.executable, "-m", "roomkeeper", "worker"], env, "bench-worker").start()
    try:
        deadline = time.monotonic() + 30
        while "worker started" not in proc.output():
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{proc.output()}")
            await asyncio.sleep(0.05)
        yield proc
    finally:
        proc.stop()


async def emit_batch(redis: Redis, outbox: Outbox, url: str, events: list[tuple[str, int]]) -> None:
    """Emit events, 200 per transaction, so emitting is never what limits the rate."""
    for chunk in range(0, len(events), 200):
        async with redis.pipeline(transaction=True) as pipe:
            for room_id, seq in events[chunk : chunk + 200]:
                body = event_body(room_id, seq, PAD)
                outbox.emit(
                    pipe,
                    event_id=json.loads(body)["id"],
                    event="participant_joined",
                    room_id=room_id,
                    body=body,
                    room_webhook_url=url,
                )
            await pipe.execute()


async def emit_one(redis: Redis, outbox: Outbox, url: str, room_id: str, seq: int) -> None:
    """One event in its own transaction, as the worker's producers do."""
    await emit_batch(redis, outbox, url, [(room_id, seq)])


async def stats(http: aiohttp.ClientSession, base: str, phase: str, lat: bool = False) -> Any:
    """The receiver's figures for one phase."""
    query = "?latencies=1" if lat else ""
    async with http.get(f"{base}/_stats/{phase}{query}") as resp:
        return await resp.json()


async def wait_count(http: aiohttp.ClientSession, base: str, phase: str, n: int) -> float:
    """Poll until `n` arrived in `phase`; returns when the last of them arrived (`time.time()`,
    stamped by the receiver). Polling slowly and taking the receiver's stamp keeps the poll off
    the receiver the worker is waiting on (the bare client's runs are never polled) without
    adding the poll's interval to the measured time."""
    deadline = time.perf_counter() + 300
    while (figures := await stats(http, base, phase))["count"] < n:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{phase}: {n} deliveries not reached")
        await asyncio.sleep(0.05)
    return float(figures["last_at"])


async def kept_bytes(redis: Redis) -> int:
    """Redis's used memory less its clients' buffers: the worker's 64 connections hold about
    1.5 MB of query buffers right after a busy phase, which Redis frees once they idle (about
    2 s later), so they are not what a delivered event leaves behind."""
    stats = await redis.memory_stats()
    used = (await redis.info("memory"))["used_memory"]
    return int(used) - int(stats["clients.normal"]) - int(stats["clients.slaves"])


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))]


# --- the phases ---------------------------------------------------------------------------------


async def throughput(
    redis: Redis, outbox: Outbox, http: aiohttp.ClientSession, base: str, phase: str,
    rooms: int, per_room: int,
) -> dict[str, Any]:  # fmt: skip
    """Emit rooms x per_room events, interleaved by room; time until all have arrived."""
    events = [(f"{phase}-{r}", s) for s in range(per_room) for r in range(rooms)]
    started = time.time()  # the receiver stamps arrivals with the same clock
    await emit_batch(redis, outbox, f"{base}/bench/{phase}", events)
    done = await wait_count(http, base, phase, len(events))
    figures = await stats(http, base, phase)
    return {
        "count": len(events),
        "seconds": done - started,
        "rate": len(events) / (done - started),
        "disorder": figures["disorder"],
    }


async def latency(
    redis: Redis, outbox: Outbox, http: aiohttp.ClientSession, base: str, phase: str,
    rate: float, seconds: float, rooms: int,
) -> dict[str, Any]:  # fmt: skip
    """A steady `rate` events/s for `seconds`; emit-to-receipt percentiles."""
    n = int(rate * seconds)
    url = f"{base}/bench/{phase}"
    start = time.perf_counter()
    for i in range(n):
        await _sleep_until(start + i / rate)
        await emit_one(redis, outbox, url, f"{phase}-{i % rooms}", i // rooms)
    await wait_count(http, base, phase, n)
    values = [v * 1000 for v in (await stats(http, base, phase, lat=True))["latencies"]]
    return {"count": n, "p50_ms": pct(values, 50), "p99_ms": pct(values, 99), "max_ms": max(values)}


async def main(args: argparse.Namespace) -> None:
    """Run every phase and print the figures with their ratios."""
    redis_server = RedisServer()
    redis_server.start()
    receiver, port = helper_server("bench.deliveries", "--serve-receiver", "receiver")
    base = f"http://127.0.0.1:{port}"
    quick = args.quick
    rooms, per_room = (500, 4) if quick else (1000, 10)
    single = 300 if quick else 2000
    lat_seconds = 5.0 if quick else 30.0
    # Events are emitted through the client roomkeeper's own producers use (hiredis packing).
    settings = settings_for(redis_server.url)
    redis = redis_client(settings)
    outbox = Outbox(settings, Schedule(redis, SCHEDULE_NAME))
    results: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as http:
            # Baselines first, each its own process against the same receiver.
            results["bare_parallel"] = run_bare_client(
                f"{base}/bench/bare-parallel", concurrency=args.concurrency,
                count=rooms * per_room, rooms=rooms, rate=0,
            )  # fmt: skip
            results["bare_serial"] = run_bare_client(
                f"{base}/bench/bare-serial", concurrency=1, count=single, rooms=1, rate=0
            )
            results["bare_latency"] = run_bare_client(
                f"{base}/bench/bare-latency", concurrency=args.concurrency,
                count=int(args.rate * lat_seconds), rooms=50, rate=args.rate,
            )  # fmt: skip
            lat = [v * 1000 for v in (await stats(http, base, "bare-latency", True))["latencies"]]
            results["bare_latency"] |= {"p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}

            async with worker(redis_server, args.concurrency) as proc:
                before = await kept_bytes(redis)
                cpu0 = cpu_s(proc)
                results["parallel"] = await throughput(
                    redis, outbox, http, base, "parallel", rooms, per_room
                )
                results["cpu_us_parallel"] = (cpu_s(proc) - cpu0) / rooms / per_room * 1e6
                # What a delivered event leaves behind for the retention period (its record,
                # body and index entries), with the queues empty again.
                retained = await kept_bytes(redis) - before
                results["bytes_per_delivery"] = retained / results["parallel"]["count"]
                cpu0 = cpu_s(proc)
                results["serial"] = await throughput(redis, outbox, http, base, "serial", 1, single)
                results["cpu_us_serial"] = (cpu_s(proc) - cpu0) / single * 1e6
                results["latency"] = await latency(
                    redis, outbox, http, base, "latency", args.rate, lat_seconds, rooms=50
                )
                counts = await redis.hgetall(keys.DELIVERY_COUNTS)
                worker_log = proc.output()
    finally:
        await redis.aclose()
        receiver.stop()
        redis_server.cleanup()

    total = rooms * per_room + single + int(args.rate * lat_seconds)
    assert int(counts.get("delivered", 0)) == total, (counts, worker_log[-2000:])
    assert "Traceback" not in worker_log, worker_log[-4000:]
    r = results
    rows = [
        ("deliveries, many rooms", f"{r['parallel']['count']} events over {rooms} rooms, "
         f"concurrency {args.concurrency}"),
        ("  roomkeeper worker", f"{r['parallel']['rate']:.0f} deliveries/s "
         f"({r['parallel']['seconds']:.2f} s, out-of-order: {r['parallel']['disorder']})"),
        ("  bare aiohttp POST loop", f"{r['bare_parallel']['rate']:.0f} POSTs/s "
         f"({r['bare_parallel']['seconds']:.2f} s)"),
        ("  ratio worker / bare", f"{r['parallel']['rate'] / r['bare_parallel']['rate']:.2f}"),
        ("  Redis kept per delivered event", f"{r['bytes_per_delivery']:.0f} bytes "
         "(record, body and index entries, for the retention period)"),
        ("  worker CPU per delivery", f"{r['cpu_us_parallel']:.0f} µs"),
        ("deliveries, one room (ordered)", f"{single} events"),
        ("  roomkeeper worker", f"{r['serial']['rate']:.0f} deliveries/s "
         f"(out-of-order: {r['serial']['disorder']})"),
        ("  bare POST loop, 1 at a time", f"{r['bare_serial']['rate']:.0f} POSTs/s"),
        ("  ratio worker / bare", f"{r['serial']['rate'] / r['bare_serial']['rate']:.2f}"),
        ("  worker CPU per delivery", f"{r['cpu_us_serial']:.0f} µs"),
        ("latency at a steady rate", f"{args.rate:.0f} events/s for {lat_seconds:.0f} s"),
        ("  roomkeeper emit → receipt", f"p50 {r['latency']['p50_ms']:.1f} ms, "
         f"p99 {r['latency']['p99_ms']:.1f} ms, max {r['latency']['max_ms']:.1f} ms"),
        ("  bare POST start → receipt", f"p50 {r['bare_latency']['p50_ms']:.1f} ms, "
         f"p99 {r['bare_latency']['p99_ms']:.1f} ms"),
        ("  ratio p50 worker / bare",
         f"{r['latency']['p50_ms'] / r['bare_latency']['p50_ms']:.1f}"),
        ("  for scale: arq's 0.5 s poll", "p50 ≈ 250 ms"),
    ]  # fmt: skip
    print(json.dumps({"bench": "deliveries", "quick": quick, **results}, default=str))
    width = max(len(k) for k, _ in rows)
    print("\nwebhook deliveries (real redis-server, `roomkeeper worker`, receiver: own processes)")
    for key, value in rows:
        print(f"  {key.ljust(width)}  {value}")
    print(
        f"ratio worker / bare: many rooms {r['parallel']['rate'] / r['bare_parallel']['rate']:.2f}"
        f", one room {r['serial']['rate'] / r['bare_serial']['rate']:.2f}"
    )


def cli() -> None:
    """Entry point; also the receiver's and the bare client's (as subprocesses)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run, under a minute")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=100.0, help="events/s for the latency run")
    parser.add_argument("--serve-receiver", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--bare-client", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rooms", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receiver:
        serve_receiver(args.serve_receiver)
    elif args.bare_client:
        result = asyncio.run(
            bare_client(
                args.bare_client,
                concurrency=args.concurrency,
                count=args.count,
                rooms=args.rooms,
                rate=args.rate,
            )
        )
        print(json.dumps(result), flush=True)
    else:
        asyncio.run(main(args))


if __name__ == "__main__":
    cli()
