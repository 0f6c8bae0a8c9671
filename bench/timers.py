"""Timer precision at scale, and what tracking a room costs.

Phase A (roomkeeper): N rooms created through the API with `empty_timeout`s spread over a window;
nobody joins, so each must be ended at creation_time_ms + empty_timeout. Lateness = when the
emulator received the room's DeleteRoom minus that deadline. The emulator's own idle closing is
switched off (1 h ticker), so every end is roomkeeper's. Every room has a `webhook_url` at a
receiver process, so while the timers fire the worker also delivers each room's
`session_ended` and `room_finished` (and works LiveKit's inbound `room_finished`). The first
deadline falls `--offset` s after the first submit (default: long enough for one worker to create
every room first; the table says how long before the first deadline creation was done).

Phase B (baseline, same run): the same rooms created straight in an emulator running LiveKit's
own rule — a 1 s idle ticker comparing whole seconds — and the lateness of its room_finished.
For reference, plugNmeet checks durations every 5 s and empty rooms every 5 min.

Also: Redis memory per tracked room (seed example metadata) and worker RSS at N rooms.

    .venv/bin/python -m bench.timers [--rooms 10000 --window 60] [--quick] [--breakdown]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections import Counter

import aiohttp
from livekit import api
from redis.asyncio import Redis

from bench.common import (
    Emulator,
    cpu_s,
    event_counts,
    helper_server,
    percentile,
    report,
    roomkeeper,
    rss_mib,
    serve_event_counter,
    wait_until,
)
from tests.support.api import API_KEY, API_SECRET, LK_KEY, LK_SECRET, seed_request
from tests.support.servers import RedisServer, free_port
from worker.rooms.records import Store
from worker.webhooks.signing import body_hmac

CONCURRENCY = 64  # the baseline's LiveKit calls in flight


def timeouts(n: int, offset: int, window: int) -> list[int]:
    """empty_timeout per room: `offset` s plus a share of the window, spread evenly."""
    return [offset + (i * window) // n for i in range(n)]


async def create_through_api(url: str, n: int, empty: list[int], hook: str) -> None:
    """N creates through `createBulk`, 500 per call (the seed metadata makes 1,000 exceed 1 MiB)."""
    async with aiohttp.ClientSession() as session:
        for start in range(0, n, 500):
            rooms = [
                {**seed_request(f"t{i}", webhook_url=hook), "empty_timeout": empty[i]}
                for i in range(start, min(n, start + 500))
            ]
            body = json.dumps({"rooms": rooms}).encode()
            headers = {
                "Content-Type": "application/json",
                "API-KEY": API_KEY,
                "HASH-SIGNATURE": body_hmac(body, API_SECRET),
            }
            async with session.post(
                f"{url}/auth/room/createBulk", data=body, headers=headers
            ) as resp:
                answer = await resp.json()
                assert resp.status == 202, answer
                assert all(r["accepted"] for r in answer["results"]), answer


def lateness_summary(late: list[float]) -> str:
    """p50 / p99 / max (and the earliest, negative when early) in milliseconds."""
    return (
        f"p50 {percentile(late, 50) * 1000:7.1f} ms   p99 {percentile(late, 99) * 1000:7.1f} ms"
        f"   max {max(late) * 1000:7.1f} ms   earliest {min(late) * 1000:7.1f} ms"
    )


async def kept_bytes(redis: Redis) -> int:
    """Redis's used memory less its clients' buffers (the API's and the worker's connections
    hold query buffers of the bulk calls just sent, which Redis frees once they idle): what the
    rooms themselves keep, as `bench.deliveries` measures a delivered event."""
    stats = await redis.memory_stats()
    used = (await redis.info("memory"))["used_memory"]
    return int(used) - int(stats["clients.normal"]) - int(stats["clients.slaves"])


# What varies in a key's name (ids, room names, hashes), so keys of one kind group together.
_VARYING = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # uuids
    r"|dlv_[0-9a-f]+|RM_\w+|EG_\w+|[0-9a-f]{16,}|(?<=[:|])t\d+\b|\b\d{6,}\b"
)


async def key_breakdown(redis: Redis, n: int) -> list[tuple[str, int, float]]:
    """Bytes per room of each kind of key (`MEMORY USAGE`, which leaves out Redis's key and
    expiry tables), biggest first: (kind, keys, bytes per room)."""
    size: Counter[str] = Counter()
    count: Counter[str] = Counter()
    async for key in redis.scan_iter(count=1000):
        kind = _VARYING.sub("<id>", key)
        size[kind] += int(await redis.memory_usage(key, samples=0) or 0)
        count[kind] += 1
    return [(kind, count[kind], total / n) for kind, total in size.most_common()]


async def phase_roomkeeper(
    n: int, empty: list[int], workers: int, breakdown: bool = False
) -> tuple[list[float], dict[str, float]]:
    """Lateness of each roomkeeper end, and the run's other figures."""
    redis_server = RedisServer()
    redis_server.start()
    api_port = free_port()
    emu = Emulator(tick=3600, webhook_urls=[f"http://127.0.0.1:{api_port}/webhook"]).start()
    receiver, receiver_port = helper_server("bench.timers", "--receiver", "receiver")
    receiver_url = f"http://127.0.0.1:{receiver_port}"
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        before = await kept_bytes(redis)
        async with roomkeeper(redis_server, emu.url, workers=workers, api_port=api_port) as (
            url,
            procs,
        ):
            started = time.time()
            await create_through_api(url, n, empty, f"{receiver_url}/hook")
            # Every room in LiveKit (with too short an --offset the first deadlines may pass
            # before the last rooms are created).
            await wait_until(lambda: _created(emu, n), 600, "every room created", every=0.25)
            created_at = time.time()
            # Memory once every room is tracked (and, with the default offset, before the first
            # deadline).
            after = await kept_bytes(redis)
            with_buffers = int((await redis.info("memory"))["used_memory"])
            rss = [rss_mib(p.proc.pid) for p in procs if p.proc]
            if breakdown:
                kinds = await key_breakdown(redis, n)
                print(
                    f"Redis per tracked room by kind of key ({(after - before) / n:.0f} B in all,"
                    f" {(with_buffers - after) / n:.0f} B more in clients' buffers then):"
                )
                for kind, keys_of_kind, per_room in kinds:
                    print(f"  {kind:48} {keys_of_kind:7} keys  {per_room:8.1f} B per room")
                rest = (after - before) / n - sum(k[2] for k in kinds)
                print(f"  {'(Redis key and expiry tables)':48} {'':12} {rest:8.1f} B")
            # A room's CreateRoom has returned some milliseconds before its session is recorded.
            deadlines = await wait_until(lambda: _deadlines(redis, n), 60, "every room recorded")
            first = min(deadlines.values())
            # The worker's CPU from the first deadline (or now, if that has passed) to the last
            # room's end: the timers and the deliveries they cause.
            await asyncio.sleep(max(0.0, first - time.time()))
            cpu_from, at_from = sum(cpu_s(p) for p in procs), time.time()
            hooks_from = await event_counts(receiver_url)
            await wait_until(
                lambda: _deletes(emu, n), max(empty) + 120, "every room ended", every=0.25
            )
            cpu = sum(cpu_s(p) for p in procs) - cpu_from
            during_s = time.time() - at_from
            hooks = await event_counts(receiver_url) - hooks_from
            calls = (await emu.get("calls?method=DeleteRoom"))["calls"]
        late = [c["at"] - deadlines[c["room"]] for c in calls if c["room"] in deadlines]
        return late, {
            "bytes_per_room": (after - before) / n,
            "worker_rss": max(rss),
            "created_s": created_at - started,
            "spare_s": first - created_at,
            "span_s": max(deadlines.values()) - first,
            "timer_cpu_s": cpu,
            "timer_s": during_s,
            "delivered": float(sum(hooks.values())),
        }
    finally:
        await redis.aclose()
        receiver.stop()
        emu.proc.stop()
        redis_server.cleanup()


async def _created(emu: Emulator, n: int) -> bool:
    return int((await emu.get("stats"))["calls"].get("CreateRoom", 0)) >= n


async def _deletes(emu: Emulator, n: int) -> bool:
    return int((await emu.get("stats"))["calls"].get("DeleteRoom", 0)) >= n


async def _deadlines(redis: Redis, n: int) -> dict[str, float]:
    sessions = await Store(redis, job_ttl_s=60).sessions([f"t{i}" for i in range(n)])
    # LiveKit's creation_time_ms: the real deadline, so an early end shows as negative lateness.
    found = {
        s.room_id: s.created_ms / 1000 + s.empty_timeout
        for s in sessions
        if s.created_ms and s.empty_timeout
    }
    return found if len(found) == n else {}


async def phase_livekit(n: int, empty: list[int]) -> list[float]:
    """LiveKit's own 1 s idle ticker on the same rooms."""
    sink = f"http://127.0.0.1:{free_port()}/nowhere"  # records are kept; nothing listens
    emu = Emulator(tick=1.0, webhook_urls=[sink]).start()
    try:
        deadlines: dict[str, float] = {}
        metadata = json.dumps(seed_request("x")["metadata"])
        async with api.LiveKitAPI(emu.url, LK_KEY, LK_SECRET) as lk:
            gate = asyncio.Semaphore(CONCURRENCY)

            async def create(i: int) -> None:
                async with gate:
                    request = api.CreateRoomRequest(
                        name=f"t{i}", empty_timeout=empty[i], metadata=metadata
                    )
                    room = await lk.room.create_room(request)
                deadlines[room.name] = room.creation_time + room.empty_timeout

            await asyncio.gather(*(create(i) for i in range(n)))
        finished = await wait_until(
            lambda: _finished(emu, n), max(empty) + 60, "every room closed", every=0.5
        )
        return [w["at"] - deadlines[w["room"]] for w in finished]
    finally:
        emu.proc.stop()


async def _finished(emu: Emulator, n: int) -> list[dict[str, float]] | None:
    hooks = (await emu.get("webhooks?event=room_finished"))["webhooks"]
    return hooks if len(hooks) >= n else None


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rooms", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=60, help="seconds the deadlines span")
    parser.add_argument(
        "--offset",
        type=int,
        default=None,
        help="seconds from the first submit to the first deadline (default: rooms / 150, time "
        "enough for one worker to create them all first)",
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="500 rooms over 5 s")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also print Redis's bytes per room by kind of key once every room is created",
    )
    args = parser.parse_args()
    if args.quick:
        args.rooms, args.window, args.offset = 500, 5, 8
    if args.offset is None:
        args.offset = max(8, args.rooms // 150)
    empty = timeouts(args.rooms, args.offset, args.window)

    late, ours = await phase_roomkeeper(args.rooms, empty, args.workers, args.breakdown)
    baseline = await phase_livekit(args.rooms, empty)
    report(
        f"timer precision: {args.rooms} rooms, deadlines over {args.window} s, "
        f"{args.workers} worker process(es)",
        [
            ("roomkeeper DeleteRoom lateness", lateness_summary(late)),
            ("LiveKit 1 s idle ticker (same run)", lateness_summary(baseline)),
            (
                "ratio p50 / p99 (LiveKit ÷ roomkeeper)",
                f"{percentile(baseline, 50) / max(percentile(late, 50), 1e-6):.1f}x / "
                f"{percentile(baseline, 99) / max(percentile(late, 99), 1e-6):.1f}x",
            ),
            ("rooms ended by roomkeeper", f"{len(late)} of {args.rooms}"),
            ("Redis memory per tracked room", f"{ours['bytes_per_room'] / 1024:.2f} KiB"),
            (f"worker RSS at {args.rooms} rooms", f"{ours['worker_rss']:.0f} MiB"),
            ("creates accepted and created in", f"{ours['created_s']:.1f} s"),
            ("creation done before the first deadline", f"{ours['spare_s']:.1f} s"),
            (
                "deadlines fell over",  # rooms created later end later: the window widens
                f"{ours['span_s']:.1f} s ({args.rooms / max(ours['span_s'], 1e-6):.0f} ends/s)",
            ),
            (
                "worker CPU, first deadline → last end",
                f"{ours['timer_cpu_s']:.1f} s in {ours['timer_s']:.1f} s "
                f"({ours['timer_cpu_s'] / args.rooms * 1e6:.0f} µs per room ended)",
            ),
            ("webhooks received meanwhile", f"{ours['delivered']:.0f}"),
        ],
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--receiver":
        serve_event_counter(int(sys.argv[2]))
    else:
        asyncio.run(main())
