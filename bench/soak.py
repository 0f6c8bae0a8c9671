"""A soak: steady mixed load for minutes; memory, errors and delivery latency minute by minute.

Every part is its own process: redis-server (AOF everysec, as deployed), the LiveKit emulator
(sending its own webhooks to the API), `roomkeeper api`, `roomkeeper worker`s, and a receiver
that answers 500 once to 1 % of deliveries (chosen by webhook-id) and timestamps every receipt.
This process drives, at steady rates:
  - 20 creates/s (`/auth/room/create`, waiting for the room), each room with `room_duration`
    1 minute, so rooms keep ending on their timers (`session_ending`, then `session_ended`);
  - 200 signed LiveKit events/s to `POST /webhook` (`participant_joined`/`participant_left` of
    rooms still live), each forwarded by a worker to the room's webhook.
Reported: API and worker RSS at start and end, Redis memory, error and warning log lines, and
per minute the p50/p99 latency from a LiveKit event's POST to its forwarded receipt (and from a
create's request to its `room_created` receipt). Not part of `make test`:

    .venv/bin/python -m bench.soak [--minutes 10] [--quick]   # --quick: 1 minute
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import sys
import time
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from google.protobuf.json_format import MessageToJson
from livekit import api
from redis.asyncio import Redis

from bench.common import Emulator, percentile, report, rss_mib
from tests.support.api import API_KEY, API_SECRET, LK_KEY, LK_SECRET
from tests.support.procs import roomkeeper_env
from tests.support.servers import (
    Process,
    RedisServer,
    free_port,
    roomkeeper_cmd,
    wait_for_port,
)
from worker.webhooks.signing import body_hmac

CREATES_PER_S = 20
EVENTS_PER_S = 200
TICK_S = 0.05
FAIL_ONE_IN = 100  # deliveries whose first attempt is answered 500
ROOM_MINUTES = 1
LIVE_FOR_S = 40.0  # events go to rooms created less than this ago (they end at 60 s)
MAX_IN_FLIGHT = 400
# The receiver stands for this many integrators (a port each): roomkeeper limits attempts per
# host (`ROOMKEEPER_WEBHOOK_HOST_RPS`, 50/s by default), and one host for every room would cap the
# whole soak's deliveries at that.
RECEIVER_HOSTS = 10


def serve_receiver(ports: list[int]) -> None:
    """The integrators' end: 500 once for 1 % of webhook-ids; each receipt's latency."""
    seen: set[str] = set()
    failed: set[str] = set()
    forwarded: list[tuple[float, float]] = []  # (sent at, latency s) of LiveKit events
    created: list[tuple[float, float]] = []  # (requested at, latency s) of room_created
    counts: dict[str, int] = defaultdict(int)

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        webhook_id = request.headers.get("webhook-id", "")
        unlucky = int(hashlib.sha256(webhook_id.encode()).hexdigest(), 16) % FAIL_ONE_IN == 0
        if unlucky and webhook_id not in failed:
            failed.add(webhook_id)
            return web.Response(status=500, text="failing once")
        if webhook_id in seen:
            counts["repeat"] += 1
            return web.Response(text="ok")
        seen.add(webhook_id)
        event = json.loads(body)
        kind = event.get("event", "")
        counts[kind] += 1
        if kind in ("participant_joined", "participant_left"):
            sent = int(event["participant"]["identity"].split("-")[1]) / 1000
            forwarded.append((sent, now - sent))
        elif kind == "room_created":
            sent = int(event["room"]["room_id"].split("-")[1]) / 1000
            created.append((sent, now - sent))
        return web.Response(text="ok")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "counts": counts,
                "failed_once": len(failed),
                "forwarded": forwarded,
                "created": created,
            }
        )

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/_stats", stats)

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        for port in ports:
            await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()  # until the bench stops this process

    asyncio.run(serve())


def signed_event(kind: str, room: str, sid: str, identity: str) -> tuple[bytes, str]:
    """A LiveKit webhook event body and its Authorization token, as LiveKit signs them."""
    event = api.WebhookEvent(
        event=kind,
        id=f"EV_{uuid.uuid4().hex[:16]}",
        created_at=int(time.time()),
        room=api.Room(sid=sid, name=room),
        participant=api.ParticipantInfo(sid=f"PA_{identity}", identity=identity, state=2),
    )
    body = MessageToJson(event, indent=None)
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    return body.encode(), api.AccessToken(LK_KEY, LK_SECRET).with_sha256(digest).to_jwt()


class Load:
    """The steady load and what the API answered."""

    def __init__(self, http: aiohttp.ClientSession, url: str, hooks: list[str]) -> None:
        self.http = http
        self.url = url
        self.hooks = hooks
        self.live: deque[tuple[float, str, str]] = deque()  # (created at, room, sid)
        self.answers: dict[str, int] = defaultdict(int)
        self.events_accepted = 0
        self.in_flight = 0
        self.skipped = 0  # ticks' requests not sent because MAX_IN_FLIGHT were outstanding
        self.tasks: set[asyncio.Task[None]] = set()
        self.seq = 0

    def _spawn(self, coro: Any) -> None:
        if self.in_flight >= MAX_IN_FLIGHT:
            self.skipped += 1
            coro.close()
            return
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def create(self) -> None:
        self.in_flight += 1
        self.seq += 1
        room = f"soak-{int(time.time() * 1000)}-{self.seq}"
        payload = {
            "room_id": room,
            "metadata": {
                "room_title": room,
                "webhook_url": self.hooks[self.seq % len(self.hooks)],
                "room_features": {"room_duration": ROOM_MINUTES},
            },
        }
        raw = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "API-KEY": API_KEY,
            "HASH-SIGNATURE": body_hmac(raw, API_SECRET),
        }
        try:
            async with self.http.post(
                f"{self.url}/auth/room/create", data=raw, headers=headers
            ) as resp:
                answer = await resp.json()
            self.answers[f"create HTTP {resp.status} {answer.get('status_code')}"] += 1
            sid = (answer.get("room_info") or {}).get("sid")
            if sid:
                self.live.append((time.monotonic(), room, sid))
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.answers[f"create {type(exc).__name__}"] += 1
        finally:
            self.in_flight -= 1

    async def event(self) -> None:
        now = time.monotonic()
        while self.live and now - self.live[0][0] > LIVE_FOR_S:
            self.live.popleft()
        if not self.live:
            return
        self.in_flight += 1
        self.seq += 1
        _, room, sid = self.live[self.seq % len(self.live)]
        identity = f"u-{int(time.time() * 1000)}-{self.seq}"
        kind = "participant_joined" if self.seq % 2 else "participant_left"
        body, token = signed_event(kind, room, sid, identity)
        headers = {"Content-Type": "application/webhook+json", "Authorization": token}
        try:
            async with self.http.post(f"{self.url}/webhook", data=body, headers=headers) as resp:
                await resp.read()
            self.answers[f"event HTTP {resp.status}"] += 1
            if resp.status == 200:
                self.events_accepted += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.answers[f"event {type(exc).__name__}"] += 1
        finally:
            self.in_flight -= 1

    async def run(self, seconds: float) -> None:
        """Send at the steady rates for `seconds` (a tick every 50 ms, never catching up)."""
        start = time.monotonic()
        tick = 0
        creates_per_tick = CREATES_PER_S * TICK_S
        events_per_tick = round(EVENTS_PER_S * TICK_S)
        while (elapsed := time.monotonic() - start) < seconds:
            if int((tick + 1) * creates_per_tick) > int(tick * creates_per_tick):
                self._spawn(self.create())
            for _ in range(events_per_tick):
                self._spawn(self.event())
            tick += 1
            await asyncio.sleep(max(0.0, tick * TICK_S - elapsed))
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _drain(
    http: aiohttp.ClientSession, rec: str, accepted: int, timeout: float
) -> float | None:
    """Seconds until the receiver has `accepted` forwarded events; None if it never does."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        async with http.get(f"{rec}/_stats") as resp:
            counts = (await resp.json())["counts"]
        if counts.get("participant_joined", 0) + counts.get("participant_left", 0) >= accepted:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    return None


def log_lines(procs: list[Process]) -> dict[str, int]:
    """Error and warning lines in the processes' JSON logs."""
    counts = {"error": 0, "warning": 0}
    for proc in procs:
        for line in proc.output().splitlines():
            for level in counts:
                if f'"level":"{level}"' in line.replace(" ", ""):
                    counts[level] += 1
    return counts


def per_minute(samples: list[tuple[float, float]], start: float) -> dict[int, list[float]]:
    """Latencies (ms) bucketed by the minute of the run they were sent in."""
    buckets: dict[int, list[float]] = defaultdict(list)
    for sent, latency in samples:
        buckets[int((sent - start) // 60)].append(latency * 1000)
    return buckets


async def main(args: argparse.Namespace) -> None:
    minutes = 1.0 if args.quick else args.minutes
    redis_server = RedisServer(appendonly=True, appendfsync="everysec")
    redis_server.start()
    api_port = free_port()
    emu = Emulator(tick=1.0, webhook_urls=[f"http://127.0.0.1:{api_port}/webhook"]).start()
    rec_ports = [free_port() for _ in range(RECEIVER_HOSTS)]
    receiver = Process(
        [sys.executable, "-m", "bench.soak", "--serve-receiver", ",".join(map(str, rec_ports))],
        {},
        "receiver",
    ).start()
    for port in rec_ports:
        wait_for_port(port)
    rec = f"http://127.0.0.1:{rec_ports[0]}"
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        async with (
            stack(redis_server, emu.url, api_port, args.workers) as (url, api_proc, workers),
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)) as http,
        ):
            load = Load(http, url, [f"http://127.0.0.1:{p}/hook" for p in rec_ports])
            await load.run(5)  # warm-up: every code path once, before the first figures
            start_rss = _rss(api_proc, workers)
            start_mem = int((await redis.info("memory"))["used_memory"])
            started = time.time()
            await load.run(minutes * 60)
            end_rss = _rss(api_proc, workers)
            end_mem = int((await redis.info("memory"))["used_memory"])
            # Let the backlog drain: every accepted LiveKit event forwarded (or 3 minutes).
            drained_in = await _drain(http, rec, load.events_accepted, timeout=180)
            async with http.get(f"{rec}/_stats") as resp:
                stats = await resp.json()
            logs = log_lines([api_proc, *workers])
            peak_mem = int((await redis.info("memory"))["used_memory_peak"])
    finally:
        await redis.aclose()
        receiver.stop()
        emu.proc.stop()
        redis_server.cleanup()

    forwarded = per_minute([tuple(x) for x in stats["forwarded"]], started)
    created = per_minute([tuple(x) for x in stats["created"]], started)
    rows = [
        ("load", f"{CREATES_PER_S} creates/s (room_duration {ROOM_MINUTES} min), "
                 f"{EVENTS_PER_S} LiveKit events/s, 1 in {FAIL_ONE_IN} deliveries failed once, "
                 f"{args.workers} workers, {RECEIVER_HOSTS} receiver hosts, "
                 f"{minutes:g} min after a 5 s warm-up"),
        ("answers", json.dumps(dict(sorted(load.answers.items())))),
        ("not sent (client at its in-flight cap)", str(load.skipped)),
        ("received by the webhook", json.dumps(dict(sorted(stats["counts"].items())))),
        ("deliveries failed once then retried", str(stats["failed_once"])),
        ("backlog drained after the load stopped",
         f"{drained_in:.1f} s" if drained_in is not None else "not within 180 s"),
        ("API RSS start → end", f"{start_rss[0]:.0f} → {end_rss[0]:.0f} MiB"),
        *[
            (f"worker {i} RSS start → end", f"{s:.0f} → {e:.0f} MiB")
            for i, (s, e) in enumerate(zip(start_rss[1:], end_rss[1:], strict=True))
        ],
        ("Redis used_memory start → end (peak)",
         f"{start_mem / 2**20:.1f} → {end_mem / 2**20:.1f} MiB ({peak_mem / 2**20:.1f})"),
        ("log lines (API + workers)", f"{logs['error']} error, {logs['warning']} warning"),
    ]  # fmt: skip
    for minute in sorted(set(forwarded) | set(created)):
        if minute < 0:
            continue
        f, c = forwarded.get(minute, []), created.get(minute, [])
        rows.append(
            (
                f"minute {minute + 1}",
                f"event → forwarded p50 {percentile(f, 50):6.1f} ms "
                f"p99 {percentile(f, 99):7.1f} ms ({len(f)}); "
                f"create → room_created p99 {percentile(c, 99):7.1f} ms ({len(c)})",
            )
        )
    report(f"Soak: {minutes:g} min of steady mixed load", rows)


@contextlib.asynccontextmanager
async def stack(
    redis: RedisServer, livekit_url: str, port: int, workers: int
) -> AsyncIterator[tuple[str, Process, list[Process]]]:
    """`roomkeeper api` on `port` and `workers` workers, each its own process."""
    env = roomkeeper_env(
        redis.url,
        livekit_url,
        ROOMKEEPER_LOG_LEVEL="warning",
        ROOMKEEPER_SESSION_ENDING_WARNINGS="30",
    )
    api_proc = Process(roomkeeper_cmd("api", "--port", str(port)), env, "api").start()
    procs = [Process(roomkeeper_cmd("worker"), env, f"worker{i}").start() for i in range(workers)]
    try:
        wait_for_port(port, 30)
        yield f"http://127.0.0.1:{port}", api_proc, procs
    finally:
        for proc in [api_proc, *procs]:
            proc.stop()


def _rss(api_proc: Process, workers: list[Process]) -> list[float]:
    procs = [api_proc, *workers]
    return [rss_mib(p.proc.pid) if p.proc else float("nan") for p in procs]


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="1 minute")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--serve-receiver", metavar="PORTS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receiver:
        serve_receiver([int(p) for p in args.serve_receiver.split(",")])
        return
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
