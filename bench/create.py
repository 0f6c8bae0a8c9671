"""`/auth/room/create` with `Prefer: respond-async` under load, against a bare aiohttp handler.

The same load generator (its own process, closed loop, fresh signed bodies) drives, in one run:
  1. a bare aiohttp JSON handler that reads the body and answers 202 (the floor of any aiohttp
     service on this machine), and
  2. `roomkeeper api` (auth over the raw body, strict JSON, validation and normalisation, the
     idempotency claim in Redis, the arq enqueue) with no worker running, so the figure is the
     API's own; the queued jobs are left for a worker that never comes. Three times: Redis with
     AOF fsynced every second (as deployed), fsynced on every write, and not persisted.

    .venv/bin/python -m bench.create [--duration 10 --concurrency 32] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys

from bench.common import Emulator, cpu_s, report, roomkeeper
from tests.support.api import API_KEY, API_SECRET
from tests.support.servers import Process, RedisServer, free_port, wait_for_port


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load(url: str, concurrency: int, duration: float, prefix: str) -> dict[str, object]:
    """Run the load generator process against `url`; its JSON result, with its own CPU time
    per request (`loadgen_cpu_us`): on two cores it shares the machine with what it measures."""
    cpu0 = _children_cpu_s()
    env = {**os.environ, "ROOMKEEPER_API_KEY": API_KEY, "ROOMKEEPER_API_SECRET": API_SECRET}
    out = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", url, "--concurrency", str(concurrency),
         "--duration", str(duration), "--prefix", prefix],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    result["loadgen_cpu_us"] = (_children_cpu_s() - cpu0) / max(1, int(result["requests"])) * 1e6  # type: ignore[call-overload]
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="3 s per run")
    args = parser.parse_args()
    if args.quick:
        args.duration = 3.0

    port = free_port()
    bare = Process([sys.executable, "-m", "bench.bare", str(port)], {}, "bare").start()
    try:
        wait_for_port(port)
        cpu0 = cpu_s(bare)
        base = load(
            f"http://127.0.0.1:{port}/auth/room/create", args.concurrency, args.duration, "b"
        )
        base["cpu_us"] = (cpu_s(bare) - cpu0) / max(1, int(base["requests"])) * 1e6  # type: ignore[call-overload]
    finally:
        bare.stop()

    # roomkeeper against Redis as deployed (AOF, fsync every second), then the two other ways
    # Redis can keep its data, to show what durability costs.
    modes = {
        "AOF everysec (deploy/)": RedisServer(appendonly=True, appendfsync="everysec"),
        "AOF always": RedisServer(appendonly=True, appendfsync="always"),
        "no persistence": RedisServer(),
    }
    ours: dict[str, dict[str, object]] = {}
    emu = Emulator(tick=3600).start()
    try:
        for i, (mode, redis) in enumerate(modes.items()):
            redis.start()
            try:
                async with roomkeeper(redis, emu.url, workers=0) as (url, procs):
                    cpu0 = cpu_s(procs.api)
                    ours[mode] = load(
                        f"{url}/auth/room/create", args.concurrency, args.duration, f"r{i}"
                    )
                    accepted = int(dict(ours[mode]["statuses"]).get("202", 0))  # type: ignore[call-overload]
                    ours[mode]["cpu_us"] = (cpu_s(procs.api) - cpu0) / max(1, accepted) * 1e6
            finally:
                redis.cleanup()
    finally:
        emu.proc.stop()

    def row(result: dict[str, object]) -> str:
        return (
            f"{float(result['rps']):8.0f} req/s  p50 {result['p50_ms']} ms  "  # type: ignore[arg-type]
            f"p99 {result['p99_ms']} ms  {result['statuses']}"
        )

    base_rps = float(base["rps"])  # type: ignore[arg-type]
    deployed = float(ours["AOF everysec (deploy/)"]["rps"])  # type: ignore[arg-type]
    report(
        f"create with Prefer: respond-async, {args.concurrency} connections, "
        f"{args.duration:g} s each",
        [
            ("bare aiohttp handler", row(base)),
            *((f"roomkeeper api, Redis {mode}", row(result)) for mode, result in ours.items()),
            (
                "API CPU per accepted create (AOF everysec)",
                f"{float(ours['AOF everysec (deploy/)']['cpu_us']):.0f} µs",  # type: ignore[arg-type]
            ),
            (
                "bare handler CPU per request",
                f"{float(base['cpu_us']):.0f} µs",  # type: ignore[arg-type]
            ),
            (
                "load generator CPU per request",
                f"bare {float(base['loadgen_cpu_us']):.0f} µs, roomkeeper "  # type: ignore[arg-type]
                f"{float(ours['AOF everysec (deploy/)']['loadgen_cpu_us']):.0f} µs "  # type: ignore[arg-type]
                "(one process: 1e6 ÷ this bounds its req/s)",
            ),
            ("ratio (roomkeeper, AOF everysec ÷ bare)", f"{deployed / base_rps:.2f}"),
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
