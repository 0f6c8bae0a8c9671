"""A small closed-loop HTTP load generator, run as its own process so it never shares a loop.

`python -m bench.loadgen URL --mode create|bare --concurrency N --duration S` prints one JSON line:
requests, seconds, req/s, status counts and latency percentiles. In `create` mode every request is
a fresh, signed `/auth/room/create` with `Prefer: respond-async`; in `bare` mode the same body goes
to a plain handler, so the two runs differ only in what answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections import Counter

import aiohttp

from worker.webhooks.signing import body_hmac


def _body(i: int, prefix: str) -> bytes:
    return json.dumps(
        {
            "room_id": f"{prefix}-{i}",
            "metadata": {"room_title": f"bench room {i}", "room_features": {}},
        },
        separators=(",", ":"),
    ).encode()


async def run(args: argparse.Namespace) -> dict[str, object]:
    """Drive the URL for the duration; return the figures."""
    key, secret = os.environ["ROOMKEEPER_API_KEY"], os.environ["ROOMKEEPER_API_SECRET"]
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    counter = 0
    deadline = time.perf_counter() + args.duration
    connector = aiohttp.TCPConnector(limit=args.concurrency)

    async with aiohttp.ClientSession(connector=connector) as session:

        async def one_client() -> None:
            nonlocal counter
            while time.perf_counter() < deadline:
                counter += 1
                body = _body(counter, args.prefix)
                headers = {
                    "Content-Type": "application/json",
                    "API-KEY": key,
                    "HASH-SIGNATURE": body_hmac(body, secret),
                    "Prefer": "respond-async",
                }
                started = time.perf_counter()
                async with session.post(args.url, data=body, headers=headers) as resp:
                    await resp.read()
                    statuses[resp.status] += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "seconds": round(elapsed, 2),
        "rps": round(n / elapsed, 1),
        "statuses": dict(statuses),
        "p50_ms": round(statistics.median(latencies) * 1000, 2) if n else None,
        "p99_ms": round(latencies[int(n * 0.99) - 1] * 1000, 2) if n else None,
    }


def main() -> None:
    """CLI."""
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--prefix", default="bench")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
