"""Bulk creation end to end: `createBulk` → queue → workers → LiveKit → `room_created` received.

In one run, against one LiveKit emulator process:
  1. baseline: the same number of rooms created by calling `livekit-api` CreateRoom directly, with
     the same number of calls in flight as the workers allow (no queue, no durability, no
     webhooks);
  2. roomkeeper: `roomkeeper api` and N `roomkeeper worker` processes; the rooms go in through
     `createBulk` calls of 1,000, each with a `webhook_url` pointing at a receiver process; the
     clock runs from the first submit until every room exists in LiveKit *and* its
     `room_created` has been received. The emulator sends its own webhooks (room_started) to the
     API as LiveKit would, so the workers carry that load too.

    .venv/bin/python -m bench.bulk [--rooms 10000] [--workers 2] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from livekit import api
from redis.asyncio import Redis

from bench.common import Emulator, cpu_s, helper_server, report, wait_until
from tests.support.api import API_KEY, API_SECRET, LK_KEY, LK_SECRET
from tests.support.procs import roomkeeper_env
from tests.support.servers import Process, RedisServer, free_port, wait_for_port
from worker.webhooks.signing import body_hmac

PER_CALL = 1000
DEFAULT_CONCURRENCY = 32  # ROOMKEEPER_CREATE_CONCURRENCY's default, per worker process


# --------------------------------------------------------------------------- the receiver


def serve_receiver(port: int) -> None:
    """A webhook receiver process: counts distinct rooms whose `room_created` arrived."""
    created: set[str] = set()
    counts = {"requests": 0}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        counts["requests"] += 1
        if b'"event":"room_created"' in body:
            created.add(json.loads(body)["room"]["room_id"])
        return web.Response(text="ok")

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"room_created": len(created), **counts})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/count", count)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# --------------------------------------------------------------------------- the baseline


async def baseline(livekit_url: str, rooms: int, concurrency: int) -> float:
    """Seconds to create `rooms` rooms with `concurrency` direct CreateRoom calls in flight."""
    names = iter(f"base-{i}" for i in range(rooms))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        lk = api.LiveKitAPI(livekit_url, LK_KEY, LK_SECRET, session=session)

        async def caller() -> None:
            for name in names:
                await lk.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=1800))

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        await lk.aclose()
    return elapsed


# --------------------------------------------------------------------------- roomkeeper


def bulk_body(start: int, count: int, hook: str) -> bytes:
    extra = {"webhook_url": hook} if hook else {}
    rooms = [
        {
            "room_id": f"rk-{i}",
            "metadata": {"room_title": f"Room {i}", "room_features": {}, **extra},
        }
        for i in range(start, start + count)
    ]
    return json.dumps({"rooms": rooms}, separators=(",", ":")).encode()


async def submit(url: str, rooms: int, hook: str) -> tuple[float, list[float]]:
    """createBulk calls of 1,000 rooms, one after the other; (start time, per-call seconds)."""
    bodies = [bulk_body(i, min(PER_CALL, rooms - i), hook) for i in range(0, rooms, PER_CALL)]
    took: list[float] = []
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        for body in bodies:
            headers = {
                "Content-Type": "application/json",
                "API-KEY": API_KEY,
                "HASH-SIGNATURE": body_hmac(body, API_SECRET),
            }
            t0 = time.perf_counter()
            async with session.post(f"{url}/auth/room/createBulk", data=body, headers=headers) as r:
                answer = await r.json()
            took.append(time.perf_counter() - t0)
            accepted = sum(res["accepted"] for res in answer.get("results", []))
            if r.status != 202 or accepted != body.count(b'"room_id"'):
                raise RuntimeError(f"createBulk refused rooms: HTTP {r.status} {answer.get('msg')}")
    return started, took


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return await resp.json()


async def acceptance_alone(redis: RedisServer, emu: Emulator, args: argparse.Namespace) -> float:
    """Seconds `createBulk` takes to accept every room with no worker competing for the CPU."""
    api_port = free_port()
    async with stack(
        redis, emu.url, api_port, argparse.Namespace(**{**vars(args), "workers": 0})
    ) as (
        url,
        _,
    ):
        started, _took = await submit(url, args.rooms, "http://127.0.0.1:9/hook")
        elapsed = time.perf_counter() - started
    client = Redis.from_url(redis.url)
    try:
        await client.flushall()  # the real run starts from an empty queue
    finally:
        await client.aclose()
    return elapsed


async def run_roomkeeper(
    redis: RedisServer,
    emu: Emulator,
    receiver: Process,
    receiver_url: str,
    args: argparse.Namespace,
) -> dict[str, float]:
    """Submit through createBulk; times until all rooms exist and all events arrived."""
    api_port = free_port()
    lk_hooks = [] if args.create_only else [f"http://127.0.0.1:{api_port}/webhook"]
    await emu.post("config", {"webhook_urls": lk_hooks})
    async with stack(redis, emu.url, api_port, args) as (url, procs):
        watched = {
            "api": [procs[0]],
            "workers": procs[1:],
            "emulator": [emu.proc],
            "receiver": [receiver],
            "redis": [redis.proc],
        }
        cpu_before = {k: sum(cpu_s(p) for p in ps) for k, ps in watched.items()}
        hook = "" if args.create_only else f"{receiver_url}/hook"
        started, took = await submit(url, args.rooms, hook)
        accepted_at = time.perf_counter()

        async def in_livekit() -> bool:
            return int((await emu.get("stats"))["rooms"]) >= args.rooms

        async def events_in() -> bool:
            if args.create_only:
                return True
            counts = await get_json(f"{receiver_url}/count")
            return int(counts["room_created"]) >= args.rooms

        await wait_until(in_livekit, 600, "every room in LiveKit", every=0.05)
        created_at = time.perf_counter()
        await wait_until(events_in, 600, "every room_created received", every=0.05)
        done_at = time.perf_counter()
        cpu = {f"cpu_{k}": sum(cpu_s(p) for p in ps) - cpu_before[k] for k, ps in watched.items()}
    return {
        **cpu,
        "accept_s": accepted_at - started,
        "call_max_s": max(took),
        "livekit_s": created_at - started,
        "total_s": done_at - started,
    }


@contextlib.asynccontextmanager
async def stack(
    redis: RedisServer, livekit_url: str, api_port: int, args: argparse.Namespace
) -> AsyncIterator[tuple[str, list[Process]]]:
    """`roomkeeper api` + `--workers` `roomkeeper worker` processes, each up before the clock."""
    health = Path(tempfile.mkdtemp(prefix="rk-bench-"))
    env = roomkeeper_env(
        redis.url,
        livekit_url,
        ROOMKEEPER_LOG_LEVEL="warning",
        ROOMKEEPER_CREATE_CONCURRENCY=str(args.concurrency),
        ROOMKEEPER_WEBHOOK_RETRY_SCHEDULE="0,1,5,30",
        ROOMKEEPER_WEBHOOK_HOST_RPS="0",  # one local receiver takes every room's events
    )
    env.update(kv.split("=", 1) for kv in args.env)
    roomkeeper = [sys.executable, "-m", "roomkeeper"]
    procs = [Process([*roomkeeper, "api", "--port", str(api_port)], env, "api").start()]
    for i in range(args.workers):
        # Each worker touches its own health file once it is up: that is its readiness.
        worker_env = {**env, "ROOMKEEPER_WORKER_HEALTH_FILE": str(health / f"w{i}")}
        procs.append(Process([*roomkeeper, "worker"], worker_env, f"worker{i}").start())
    try:
        try:
            wait_for_port(api_port, 30)
        except TimeoutError:
            raise RuntimeError(f"roomkeeper api did not start:\n{procs[0].output()}") from None

        async def workers_up() -> bool:
            return all((health / f"w{i}").exists() for i in range(args.workers))

        await wait_until(workers_up, 30, "workers started", every=0.05)
        yield f"http://127.0.0.1:{api_port}", procs
    finally:
        for proc in procs:
            proc.stop()
        shutil.rmtree(health, ignore_errors=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rooms", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2, help="roomkeeper worker processes")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="per worker")
    parser.add_argument("--quick", action="store_true", help="2,000 rooms")
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the roomkeeper processes"
    )
    parser.add_argument(
        "--create-only",
        action="store_true",
        help="diagnosis: no webhooks at all (no webhook_url, LiveKit sends none); time to LiveKit",
    )
    args = parser.parse_args()
    if args.quick:
        args.rooms = 2_000

    redis = RedisServer()
    redis.start()
    emu = Emulator(tick=3600).start()
    receiver, receiver_port = helper_server("bench.bulk", "--receiver", "receiver")
    try:
        in_flight = args.concurrency * args.workers
        emu_cpu = cpu_s(emu.proc)
        base_s = await baseline(emu.url, args.rooms, in_flight)
        emu_cpu = cpu_s(emu.proc) - emu_cpu
        await emu.post("reset", {})
        receiver_url = f"http://127.0.0.1:{receiver_port}"
        alone_s = await acceptance_alone(redis, emu, args)
        rk = await run_roomkeeper(redis, emu, receiver, receiver_url, args)
    finally:
        receiver.stop()
        emu.proc.stop()
        redis.cleanup()

    base_rate = args.rooms / base_s
    rk_rate = args.rooms / rk["total_s"]
    calls = -(-args.rooms // PER_CALL)
    cpu = ", ".join(f"{k[4:]} {v:.1f}" for k, v in rk.items() if k.startswith("cpu_"))
    title = (
        f"bulk create: {args.rooms} rooms, {args.workers} worker processes x "
        f"{args.concurrency} LiveKit calls in flight, on {os.cpu_count()} cores"
        + (" (--create-only: no webhooks)" if args.create_only else "")
    )
    rows = [
        ("baseline: livekit-api CreateRoom direct", f"{base_rate:.0f} rooms/s ({base_s:.1f} s)"),
        (
            "roomkeeper: submit → in LiveKit",
            f"{args.rooms / rk['livekit_s']:.0f} rooms/s ({rk['livekit_s']:.1f} s)",
        ),
        (
            "roomkeeper: submit → room_created received",
            f"{rk_rate:.0f} rooms/s ({rk['total_s']:.1f} s)",
        ),
        ("ratio roomkeeper / baseline", f"{rk_rate / base_rate:.2f}"),
        (
            "createBulk acceptance, alone",
            f"{args.rooms / alone_s:.0f} rooms/s ({alone_s:.2f} s, {calls} calls of <= {PER_CALL})",
        ),
        (
            "createBulk acceptance, during the run",
            f"{args.rooms / rk['accept_s']:.0f} rooms/s ({rk['accept_s']:.2f} s; "
            f"slowest call {rk['call_max_s'] * 1000:.0f} ms)",
        ),
        ("CPU s during the run", cpu),
        (
            "CPU per room",
            f"workers {rk['cpu_workers'] / args.rooms * 1e6:.0f} µs, "
            f"api {rk['cpu_api'] / args.rooms * 1e6:.0f} µs",
        ),
        ("CPU s, emulator during the baseline", f"{emu_cpu:.1f}"),
    ]
    report(title, rows)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--receiver":
        serve_receiver(int(sys.argv[2]))
    else:
        asyncio.run(main())
