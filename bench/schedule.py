"""Scheduling a term: accepting 100,000 scheduled rooms, and creating a Monday 09:00 on time.

Phase A (baseline, same run): the API alone (no worker) accepting the same `createBulk` calls
without `start_at` (claims and arq jobs written, nothing created), on its own Redis.

Phase B (roomkeeper): API + one worker, Redis with AOF everysec (as deployed), LiveKit capped at
`--rate` calls/s (`ROOMKEEPER_LIVEKIT_MAX_RPS`), the default lead (300 s).
- 200 sync creates, one at a time, on an empty schedule: their latency;
- N - D rooms scheduled weeks ahead through `createBulk` (1,000 per call): acceptance rooms/s
  and Redis bytes per schedule (used_memory before/after; no webhook target, so no delivery
  records: those are the delivery log's cost);
- the same 200 sync creates with N - D schedules waiting: no path scans them, so no slower;
- D rooms whose start_at - lead falls in one 10 s window: creation lateness (CreateRoom as the
  emulator received it, minus start_at - lead), against the floor the rate limit itself sets
  (each room at the earliest free 1/rate slot after its due time, in start order).

    .venv/bin/python -m bench.schedule [--rooms 100000 --due 2000 --rate 100] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import time
from typing import Any

import aiohttp
from redis.asyncio import Redis

from bench.common import Emulator, percentile, report, roomkeeper, rss_mib, wait_until
from tests.support.api import API_KEY, API_SECRET, minimal_request
from tests.support.servers import RedisServer
from worker import keys
from worker.webhooks.signing import body_hmac

LEAD = 300
PER_CALL = 1000
WINDOW_S = 10.0
SYNC_CREATES = 200


async def post(session: aiohttp.ClientSession, url: str, path: str, payload: Any) -> Any:
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "API-KEY": API_KEY,
        "HASH-SIGNATURE": body_hmac(body, API_SECRET),
    }
    async with session.post(f"{url}{path}", data=body, headers=headers) as resp:
        answer = await resp.json()
        assert resp.status in (200, 202), answer
        return answer


def room(i: int, prefix: str, start_at: int | None) -> dict[str, Any]:
    request = minimal_request(f"{prefix}{i:06d}")
    request["metadata"]["room_title"] = f"Lecture {i}"
    if start_at is not None:
        request["start_at"] = start_at
    return request


async def bulk(
    session: aiohttp.ClientSession,
    url: str,
    rooms: list[dict[str, Any]],
    expect: str | None,
    calls: list[float] | None = None,
) -> float:
    """Submit in calls of 1,000, one at a time; seconds taken (each call's appended to `calls`)."""
    started = time.perf_counter()
    for i in range(0, len(rooms), PER_CALL):
        call_started = time.perf_counter()
        payload = {"rooms": rooms[i : i + PER_CALL]}
        answer = await post(session, url, "/auth/room/createBulk", payload)
        if calls is not None:
            calls.append(time.perf_counter() - call_started)
        results = answer["results"]
        assert all(r["accepted"] for r in results), answer["msg"]
        if expect is not None:
            assert all(r.get("msg") == expect for r in results), results[0]
    return time.perf_counter() - started


async def sync_creates(session: aiohttp.ClientSession, url: str, prefix: str) -> list[float]:
    """Latency of SYNC_CREATES sync creates, one at a time."""
    took = []
    for i in range(SYNC_CREATES):
        started = time.perf_counter()
        answer = await post(session, url, "/auth/room/create", room(i, prefix, None))
        took.append(time.perf_counter() - started)
        assert answer["msg"] == "success", answer
    return took


async def phase_baseline(n: int) -> float:
    """Acceptance of immediate creates (API alone): rooms/s."""
    server = RedisServer(appendonly=True, appendfsync="everysec")
    server.start()
    emu = Emulator(tick=3600).start()
    try:
        async with roomkeeper(server, emu.url, workers=0) as (url, _), aiohttp.ClientSession() as s:
            await post(s, url, "/auth/job/status", {"job_ids": ["warm-up"]})
            took = await bulk(s, url, [room(i, "now", None) for i in range(n)], None)
        return n / took
    finally:
        emu.proc.stop()
        server.cleanup()


def rate_floor(due: list[float], rate: float) -> list[float]:
    """Lateness no create path can beat: rooms in due order, one per 1/rate s, none early."""
    slot, out = float("-inf"), []
    for d in sorted(due):
        slot = max(d, slot + 1 / rate)
        out.append(slot - d)
    return out


async def phase_roomkeeper(n: int, due_count: int, rate: float) -> dict[str, Any]:
    server = RedisServer(appendonly=True, appendfsync="everysec")
    server.start()
    emu = Emulator(tick=3600).start()
    redis = Redis.from_url(server.url, decode_responses=True)
    env = {"ROOMKEEPER_LIVEKIT_MAX_RPS": str(rate), "ROOMKEEPER_SCHEDULE_LEAD": str(LEAD)}
    try:
        async with roomkeeper(server, emu.url, **env) as (url, procs), aiohttp.ClientSession() as s:
            assert procs.api.proc is not None
            empty_sync = await sync_creates(s, url, "a")
            far = int(time.time()) + 30 * 86400
            spread = [far + (i * 60 * 86400) // max(n - due_count, 1) for i in range(n - due_count)]
            before = int((await redis.info("memory"))["used_memory"])
            rewrites = int((await redis.info("persistence"))["aof_rewrites"])
            api_rss = rss_mib(procs.api.proc.pid)
            per_call: list[float] = []
            far_rooms = [room(i, "far", t) for i, t in enumerate(spread)]
            took = await bulk(s, url, far_rooms, "scheduled", per_call)
            after = int((await redis.info("memory"))["used_memory"])
            # Redis rewrites its AOF by itself once it has doubled past 64 MB: a child process on
            # the same cores for a second or two, which is what a call taking 3 to 6 times longer
            # in the middle of the phase is.
            rewrites = int((await redis.info("persistence"))["aof_rewrites"]) - rewrites
            api_rss = rss_mib(procs.api.proc.pid) - api_rss
            scheduled = int(await redis.zcard(keys.SCHEDULED_BY_START))
            full_sync = await sync_creates(s, url, "b")

            # Due D rooms over one window that opens once they are all accepted.
            opens = time.time() + 15
            starts = [int(opens + LEAD + i * WINDOW_S / due_count) for i in range(due_count)]
            due_at = {f"due{i:06d}": float(t - LEAD) for i, t in enumerate(starts)}
            await bulk(s, url, [room(i, "due", t) for i, t in enumerate(starts)], "scheduled")
            calls = await wait_until(
                lambda: _created(emu, set(due_at)),
                15 + WINDOW_S + due_count / rate + 120,
                "every due room created",
                every=0.5,
            )
        late = [c["at"] - due_at[c["room"]] for c in calls]
        order = sorted(calls, key=lambda c: c["at"])
        inversions = sum(
            1 for a, b in itertools.pairwise(order) if due_at[b["room"]] < due_at[a["room"]]
        )
        return {
            "accept_rps": (n - due_count) / took,
            # The first and the last tenth of the calls: does a full schedule slow acceptance?
            "first_rps": PER_CALL / statistics.median(per_call[: max(1, len(per_call) // 10)]),
            "last_rps": PER_CALL / statistics.median(per_call[-max(1, len(per_call) // 10) :]),
            "bytes": (after - before) / max(scheduled, 1),
            "aof_rewrites": rewrites,
            "api_rss_mib": api_rss,
            "scheduled": scheduled,
            "empty_sync": empty_sync,
            "full_sync": full_sync,
            "late": late,
            "floor": rate_floor(list(due_at.values()), rate),
            "inversions": inversions,
        }
    finally:
        await redis.aclose()
        emu.proc.stop()
        server.cleanup()


async def _created(emu: Emulator, names: set[str]) -> list[dict[str, Any]] | None:
    calls = [c for c in (await emu.get("calls?method=CreateRoom"))["calls"] if c["room"] in names]
    return calls if len({c["room"] for c in calls}) >= len(names) else None


def ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.1f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rooms", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=2000, help="rooms due in the 10 s window")
    parser.add_argument("--rate", type=float, default=100.0, help="LiveKit calls/s allowed")
    parser.add_argument("--quick", action="store_true", help="10,000 rooms, 500 due")
    args = parser.parse_args()
    if args.quick:
        args.rooms, args.due = 10_000, 500
    baseline = await phase_baseline(min(args.rooms, 10_000))
    ours = await phase_roomkeeper(args.rooms, args.due, args.rate)
    late, floor = ours["late"], ours["floor"]
    report(
        f"scheduling a term: {args.rooms} rooms, {args.due} due in {WINDOW_S:.0f} s, "
        f"LiveKit capped at {args.rate:g} calls/s, one worker",
        [
            ("createBulk acceptance, immediate creates (API alone)", f"{baseline:.0f} rooms/s"),
            ("createBulk acceptance, scheduled", f"{ours['accept_rps']:.0f} rooms/s"),
            (
                "  first / last tenth of the calls (median)",
                f"{ours['first_rps']:.0f} / {ours['last_rps']:.0f} rooms/s",
            ),
            ("Redis per scheduled room", f"{ours['bytes']:.0f} bytes ({ours['scheduled']} held)"),
            (
                "  meanwhile",
                f"{ours['aof_rewrites']} AOF rewrite(s) by Redis; API RSS "
                f"{ours['api_rss_mib']:+.1f} MiB over the phase",
            ),
            (
                "sync create p50, empty schedule",
                f"{ms(ours['empty_sync'], 50)} (p99 {ms(ours['empty_sync'], 99)})",
            ),
            (
                f"sync create p50, {ours['scheduled']} scheduled",
                f"{ms(ours['full_sync'], 50)} (p99 {ms(ours['full_sync'], 99)})",
            ),
            ("creation lateness", f"p50 {ms(late, 50)}  p99 {ms(late, 99)}  max {ms(late, 100)}"),
            (
                f"floor at {args.rate:g}/s (same rooms)",
                f"p50 {ms(floor, 50)}  p99 {ms(floor, 99)}  max {ms(floor, 100)}",
            ),
            ("created out of start order (adjacent pairs)", str(ours["inversions"])),
            (
                "ratio p99 lateness (roomkeeper ÷ rate-limit floor)",
                f"{percentile(late, 99) / max(percentile(floor, 99), 1e-3):.2f}",
            ),
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
