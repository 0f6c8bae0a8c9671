"""Client CPU per webhook POST: aiohttp's client, set up as the dispatcher used it, against
roomkeeper's own pool (`worker.webhooks.http1.Pool`), in turn, to the same receiver process.

Both POST the same signed-size headers and body, one at a time and 64 in flight, for a few
rounds; what is compared is this process's CPU per POST (the receiver is bench.deliveries' own,
in its own process, and costs the same for both).

    .venv/bin/python -m bench.http_client [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from collections.abc import Awaitable, Callable

import aiohttp

from bench.common import helper_server, report
from worker.loop import run as run_loop
from worker.webhooks.http1 import Pool
from worker.webhooks.netguard import parse_cidrs

HEADERS = {
    "Content-Type": "application/json",
    "User-Agent": "roomkeeper-bench",
    "Authorization": "t" * 220,  # a plugNmeet JWT's length
    "Hash-Token": "t" * 220,
    "webhook-id": "3f1c2b1e-1d1e-4a8e-9c55-0a7f4e8b9d10",
    "webhook-timestamp": "1796171431",
    "webhook-signature": "v1," + "s" * 44,
}
Post = Callable[[str, bytes], Awaitable[int]]


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(post: Post, url: str, count: int, in_flight: int) -> tuple[float, float]:
    """(µs of this process's CPU per POST, POSTs/s) for `count` POSTs, `in_flight` at a time."""
    body = b'{"event":"participant_joined","emitted":"%f","room":{"room_id":"r%d"},"seq":"1"}'
    left = iter(range(count))

    async def caller(n: int) -> None:
        for _ in left:
            status = await post(url, body % (time.time(), n))
            assert status == 200, status

    cpu, started = cpu_s(), time.perf_counter()
    await asyncio.gather(*(caller(n) for n in range(in_flight)))
    return (cpu_s() - cpu) / count * 1e6, count / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> None:
    receiver, port = helper_server("bench.deliveries", "--serve-receiver", "receiver")
    url = f"http://127.0.0.1:{port}/bench/http-client"
    # The session as worker/webhooks/attempt.py built it before the pool (guard aside).
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256, limit_per_host=0),
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )
    timeout = aiohttp.ClientTimeout(total=15)
    pool = Pool(parse_cidrs(["127.0.0.0/8"]))

    async def with_aiohttp(url: str, body: bytes) -> int:
        headers = {**HEADERS, "Accept-Encoding": "identity"}
        async with session.post(
            url, data=body, headers=headers, allow_redirects=False, timeout=timeout
        ) as resp:
            await resp.content.read(4096)
            return resp.status

    async def with_pool(url: str, body: bytes) -> int:
        return (await pool.post(url, body, HEADERS, 15)).status

    serial, parallel = (500, 2000) if args.quick else (2000, 6000)
    figures: dict[str, list[tuple[float, float]]] = {}
    try:
        for _ in range(args.rounds):
            for name, post in (("aiohttp", with_aiohttp), ("pool", with_pool)):
                figures.setdefault(f"{name} serial", []).append(await measure(post, url, serial, 1))
                figures.setdefault(f"{name} parallel", []).append(
                    await measure(post, url, parallel, 64)
                )
    finally:
        await session.close()
        await pool.close()
        receiver.stop()

    def best(key: str) -> float:
        return min(cpu for cpu, _ in figures[key])

    rows = [
        (key, ", ".join(f"{cpu:.0f} µs ({rate:.0f}/s)" for cpu, rate in runs))
        for key, runs in figures.items()
    ]
    serial_ratio = best("aiohttp serial") / best("pool serial")
    parallel_ratio = best("aiohttp parallel") / best("pool parallel")
    rows.append(
        (
            "ratio aiohttp ÷ pool, CPU per POST",
            f"one at a time {serial_ratio:.1f}x, 64 in flight {parallel_ratio:.1f}x",
        )
    )
    report(f"client CPU per webhook POST, {args.rounds} rounds, each in turn", rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    run_loop(main(parser.parse_args()))
