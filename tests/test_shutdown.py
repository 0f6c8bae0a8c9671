"""SIGTERM under load: the API finishes what it accepted, the worker hands the rest on; nothing lost."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import aiohttp
import pytest
from redis.asyncio import Redis

from emulator.server import Emulator
from tests.support.api import (
    API_KEY,
    API_SECRET,
    LK_KEY,
    LK_SECRET,
    Api,
    eventually,
    minimal_request,
)
from tests.support.procs import api_process, roomkeeper_env, worker_process
from tests.support.servers import RedisServer
from worker import keys
from worker.webhooks.signing import body_hmac

pytestmark = pytest.mark.slow  # real processes or injected faults


async def balancer(url: str, routable: asyncio.Event, stop: asyncio.Event) -> None:
    """What a load balancer does: route to the API only while its /readyz answers 200."""
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            try:
                async with session.get(f"{url}/readyz") as resp:
                    ready = resp.status == 200
            except aiohttp.ClientError:
                ready = False
            routable.set() if ready else routable.clear()
            await asyncio.sleep(0.05)  # the probe period


async def hammer(
    url: str, routable: asyncio.Event, stop: asyncio.Event, outcomes: dict[str, list], prefix: str
) -> None:
    """One client behind the balancer: a fresh connection per request."""
    n = 0
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        while not stop.is_set():
            if not routable.is_set():
                await asyncio.sleep(0.01)  # the balancer holds new requests back
                continue
            n += 1
            body = json.dumps(minimal_request(f"{prefix}-{n}")).encode()
            headers = {
                "Content-Type": "application/json",
                "API-KEY": API_KEY,
                "HASH-SIGNATURE": body_hmac(body, API_SECRET),
                "Prefer": "respond-async",
            }
            try:
                async with session.post(
                    f"{url}/auth/room/create", data=body, headers=headers
                ) as resp:
                    payload = await resp.json()
                    outcomes["answered"].append((resp.status, payload.get("job_id")))
            except aiohttp.ClientConnectorError:
                outcomes["refused"].append(n)  # the listener is closed: the client can retry
                await asyncio.sleep(0.01)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                outcomes["reset"].append(repr(exc))


async def test_sigterm_on_the_api_under_balanced_load_resets_nothing_and_loses_no_create(
    redis_server: RedisServer, redis: Redis
) -> None:
    async with Emulator(LK_KEY, LK_SECRET, tick_interval=3600) as emu:
        env = roomkeeper_env(redis_server.url, emu.url, ROOMKEEPER_SHUTDOWN_DRAIN="1")
        outcomes: dict[str, list] = {"answered": [], "refused": [], "reset": []}
        stop, routable = asyncio.Event(), asyncio.Event()
        async with api_process(env) as (url, api):
            lb = asyncio.create_task(balancer(url, routable, stop))
            clients = [
                asyncio.create_task(hammer(url, routable, stop, outcomes, f"c{i}"))
                for i in range(8)
            ]
            await eventually(lambda: _at_least(outcomes, 50), what="load running")
            api.signal(signal.SIGTERM)
            code = await asyncio.to_thread(api.wait, 30)
            stop.set()
            await asyncio.gather(lb, *clients)

        assert code == 0, api.output()
        assert outcomes["reset"] == []
        accepted = [job for status, job in outcomes["answered"] if status == 202]
        assert len(accepted) == len(outcomes["answered"]) >= 50
        # Every accepted create is done once a worker runs: none was lost with the API.
        async with worker_process(env):
            await eventually(lambda: _all_complete(redis, accepted), timeout=60, what="jobs done")
        rooms = await _rooms(emu.url)
        assert len(rooms) == len(accepted)
    print(
        f"\nfault: API SIGTERMed under load: {len(outcomes['answered'])} requests answered, "
        f"{len(outcomes['reset'])} reset, {len(accepted)} creates accepted, {len(rooms)} created"
    )


async def _at_least(outcomes: dict[str, list], n: int) -> bool:
    return len(outcomes["answered"]) >= n


async def _all_complete(redis: Redis, job_ids: list[str]) -> bool:
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(keys.job(job_id), "state")
        states = await pipe.execute()
    return all(s == "complete" for s in states)


async def _rooms(url: str) -> list[dict]:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/_emulator/rooms") as resp:
        return list((await resp.json())["rooms"])


async def test_sigterm_on_a_worker_under_load_leaves_the_rest_for_the_next_worker(
    redis_server: RedisServer, redis: Redis
) -> None:
    async with Emulator(LK_KEY, LK_SECRET, tick_interval=3600) as emu:
        # A slow LiveKit keeps work in flight when the signal lands.
        env = roomkeeper_env(redis_server.url, emu.url, ROOMKEEPER_SHUTDOWN_GRACE="5")
        async with api_process(env) as (url, _):
            api = Api(url)
            jobs = [
                (await api.create(minimal_request(f"w-{i}"), asynchronous=True))["job_id"]
                for i in range(200)
            ]
            await _post(emu.url, "faults", {"method": "CreateRoom", "count": -1, "latency_ms": 50})
            async with worker_process(env, "first") as first:
                await eventually(lambda: _some_complete(redis, jobs), what="work under way")
                first.signal(signal.SIGTERM)
                started = time.monotonic()
                code = await asyncio.to_thread(first.wait, 30)
                took = time.monotonic() - started
            assert code == 0, first.output()
            assert took < 5 + 5  # the grace period, plus the time to close connections
            await _post(emu.url, "faults", None, method="DELETE")
            async with worker_process(env, "second"):
                await eventually(lambda: _all_complete(redis, jobs), timeout=60, what="all done")
            await api.close()
        rooms = await _rooms(emu.url)
        assert sorted(r["name"] for r in rooms) == sorted(f"w-{i}" for i in range(200))
    print(
        f"\nfault: worker SIGTERMed mid-run: exited 0 in {took:.1f} s, 200 creates accepted, "
        f"{len(rooms)} created (the rest by the next worker)"
    )


async def _some_complete(redis: Redis, job_ids: list[str]) -> bool:
    states = [await redis.hget(keys.job(j), "state") for j in job_ids[:50]]
    return states.count("complete") >= 5


async def _post(url: str, path: str, payload: object, method: str = "POST") -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, f"{url}/_emulator/{path}", json=payload) as resp,
    ):
        assert resp.status == 200
