"""LiveKit events in: `POST /webhook` → queue → one worker → forwarded to the room's webhook.

In one run, every part its own process (redis-server, the emulator, a receiver, the clients):
  1. baseline: a bare aiohttp handler that verifies LiveKit's signature with `livekit-api`'s
     `WebhookReceiver` and answers 200 (the least any verifying endpoint does), driven by the
     same poster with the same signed bodies and concurrency;
  2. roomkeeper: `roomkeeper api` + one `roomkeeper worker`; the rooms are created first through
     `createBulk`, then the poster sends signed `participant_joined` events for them. The clock
     runs from the first POST until every event has been forwarded to, and received by, the
     rooms' webhook receiver: verification, dedup, room state, the outbox and the delivery.

    .venv/bin/python -m bench.inbound [--events 5000] [--rooms 200] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from google.protobuf.json_format import MessageToJson
from livekit import api
from redis.asyncio import Redis

from bench.common import (
    Emulator,
    cpu_s,
    event_counts,
    helper_server,
    report,
    roomkeeper,
    serve_event_counter,
    wait_until,
)
from tests.support.api import API_KEY, API_SECRET, LK_KEY, LK_SECRET
from tests.support.servers import RedisServer
from worker.rooms.records import Store
from worker.webhooks.signing import body_hmac

CONCURRENCY = 32


def serve_bare(port: int) -> None:
    """The baseline: verify LiveKit's signature over the raw body, parse the event, answer 200."""
    receiver = api.WebhookReceiver(api.TokenVerifier(LK_KEY, LK_SECRET))

    async def hook(request: web.Request) -> web.Response:
        body = (await request.read()).decode()
        receiver.receive(body, request.headers.get("Authorization", ""))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/webhook", hook)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


async def post_all(url: str, lines: list[list[str]], concurrency: int) -> dict[str, Any]:
    """POST every (body, token) with `concurrency` in flight; its duration and statuses."""
    statuses: dict[int, int] = {}
    queue = iter(lines)
    headers = {"Content-Type": "application/webhook+json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def poster() -> None:
            for body, token in queue:
                async with http.post(
                    url, data=body.encode(), headers={**headers, "Authorization": token}
                ) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(poster() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"started": time.time() - elapsed, "seconds": elapsed, "statuses": statuses}


def run_poster(url: str, path: Path) -> dict[str, Any]:
    """The poster as its own process (so it never shares a CPU loop with what it measures)."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.inbound", "--post", url, "--bodies", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def signed_events(rooms: dict[str, str], count: int) -> list[tuple[str, str]]:
    """`count` distinct `participant_joined` events spread over `rooms` (name → sid), signed."""
    names = list(rooms)
    out = []
    for i in range(count):
        name = names[i % len(names)]
        event = api.WebhookEvent(
            event="participant_joined",
            id=f"EV_{uuid.uuid4().hex[:12]}",
            created_at=int(time.time()),
            room=api.Room(sid=rooms[name], name=name),
            participant=api.ParticipantInfo(sid=f"PA_{i}", identity=f"user-{i}", state=2),
        )
        body = MessageToJson(event, indent=None)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        token = api.AccessToken(LK_KEY, LK_SECRET).with_sha256(digest).to_jwt()
        out.append((body, token))
    return out


async def create_rooms(url: str, hook: str, n: int) -> None:
    """The rooms, through `createBulk` (as an integrator would)."""
    rooms = [
        {
            "room_id": f"in-{i}",
            "metadata": {"room_title": "bench", "webhook_url": hook, "room_features": {}},
        }
        for i in range(n)
    ]
    raw = json.dumps({"rooms": rooms}).encode()
    headers = {
        "Content-Type": "application/json",
        "API-KEY": API_KEY,
        "HASH-SIGNATURE": body_hmac(raw, API_SECRET),
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/auth/room/createBulk", data=raw, headers=headers) as resp,
    ):
        answer = await resp.json()
    assert answer["status"] is True, answer


async def _count(http: aiohttp.ClientSession, receiver_url: str, event: str) -> int:
    return (await event_counts(receiver_url, http))[event]


async def main(args: argparse.Namespace) -> None:
    events, n_rooms = (1000, 50) if args.quick else (args.events, args.rooms)
    tmp = Path(tempfile.mkdtemp(prefix="rk-bench-inbound-"))

    # 1. baseline
    bare, bare_port = helper_server("bench.inbound", "--serve-bare", "bare")
    try:
        fake_rooms = {f"in-{i}": f"RM_{i}" for i in range(n_rooms)}
        baseline_file = tmp / "baseline.jsonl"
        baseline_file.write_text(
            "\n".join(json.dumps(x) for x in signed_events(fake_rooms, events))
        )
        base = run_poster(f"http://127.0.0.1:{bare_port}/webhook", baseline_file)
    finally:
        bare.stop()

    # 2. roomkeeper
    redis_server = RedisServer()
    redis_server.start()
    emu = Emulator(tick=3600).start()
    receiver, rec_port = helper_server("bench.inbound", "--serve-receiver", "receiver")
    rec = f"http://127.0.0.1:{rec_port}"
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        async with (
            roomkeeper(redis_server, emu.url, workers=1) as (url, procs),
            aiohttp.ClientSession() as http,
        ):
            await create_rooms(url, f"{rec}/hook", n_rooms)
            await wait_until(
                lambda: _at_least(_count(http, rec, "room_created"), n_rooms),
                120,
                "room_created for every room",
            )
            names = [f"in-{i}" for i in range(n_rooms)]
            sessions = await Store(redis, job_ttl_s=60).sessions(names)
            sids = {s.room_id: s.sid for s in sessions}
            ours_file = tmp / "ours.jsonl"
            ours_file.write_text("\n".join(json.dumps(x) for x in signed_events(sids, events)))
            cpu0 = (cpu_s(procs.api), cpu_s(procs[0]))
            ours = run_poster(f"{url}/webhook", ours_file)
            await wait_until(
                lambda: _at_least(_count(http, rec, "participant_joined"), events),
                300,
                f"{events} participant_joined forwarded",
                every=0.01,
            )
            done = time.time()
            cpu_api, cpu_worker = cpu_s(procs.api) - cpu0[0], cpu_s(procs[0]) - cpu0[1]
            forwarded = await _count(http, rec, "participant_joined")
    finally:
        await redis.aclose()
        receiver.stop()
        emu.proc.stop()
        redis_server.cleanup()

    assert base["statuses"] == {"200": events}, base
    assert ours["statuses"] == {"200": events}, ours
    assert forwarded == events, (forwarded, events)
    base_rate = events / base["seconds"]
    intake = events / ours["seconds"]
    end_to_end = events / (done - ours["started"])
    report(
        f"LiveKit events in: {events} signed participant_joined over {n_rooms} rooms, "
        f"{CONCURRENCY} connections, one API and one worker process",
        [
            ("bare verifying aiohttp handler", f"{base_rate:8.0f} events/s accepted"),
            ("roomkeeper POST /webhook", f"{intake:8.0f} events/s accepted (answered 200)"),
            ("roomkeeper in → forwarded", f"{end_to_end:8.0f} events/s received by the room's "
             f"webhook ({forwarded}/{events})"),
            ("CPU per event", f"api {cpu_api / events * 1e6:.0f} µs, "
             f"worker {cpu_worker / events * 1e6:.0f} µs"),
            ("ratio forwarded ÷ bare", f"{end_to_end / base_rate:.2f}"),
        ],
    )  # fmt: skip


async def _at_least(count: Any, n: int) -> bool:
    return bool(await count >= n)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rooms", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="1,000 events over 50 rooms")
    parser.add_argument("--serve-receiver", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--post", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--bodies", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receiver:
        serve_event_counter(args.serve_receiver)
    elif args.serve_bare:
        serve_bare(args.serve_bare)
    elif args.post:
        lines = [json.loads(line) for line in args.bodies.read_text().splitlines()]
        print(json.dumps(asyncio.run(post_all(args.post, lines, CONCURRENCY))), flush=True)
    else:
        asyncio.run(main(args))


if __name__ == "__main__":
    cli()
