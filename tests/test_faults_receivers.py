"""Hostile webhook receivers against a real `roomkeeper worker`: each fails its own attempts, with
the reason, within the attempt timeout, and none holds up another room's deliveries.

Every receiver is its own server (tests/support/hostile.py). The worker trusts a test CA
(`SSL_CERT_FILE`), so an expired certificate fails as expired, not as unknown, and a valid one
from the same CA is delivered: the TLS checks are the ones that matter, not a missing trust root.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from emulator.server import Emulator
from tests.support.api import LK_KEY, LK_SECRET, Api, eventually, minimal_request
from tests.support.hostile import HUGE_BYTES, Hostile, hostile_receiver, make_certs, tls_receiver
from tests.support.procs import api_process, roomkeeper_env, worker_process
from tests.support.servers import Receiver, RedisServer, run_receiver

pytestmark = pytest.mark.slow

TIMEOUT_S = 2.0
SCHEDULE = "0,0.5,0.5"  # three attempts
ATTEMPTS = 3


async def deliveries_of(api: Api, room_id: str) -> list[dict[str, Any]]:
    """The room's deliveries, as `/auth/webhook/deliveries` reports them."""
    status, body = await api.post("/auth/webhook/deliveries", {"room_id": room_id})
    assert status == 200 and body["status"], body
    return list(body["deliveries"])


async def settled(api: Api, room_id: str) -> list[dict[str, Any]] | None:
    """The room's `room_created` delivery once it is delivered or dead (None before)."""
    found = [d for d in await deliveries_of(api, room_id) if d["event"] == "room_created"]
    if found and found[0]["state"] in ("delivered", "dead"):
        return found
    return None


def created_at(receiver: Receiver, room_id: str) -> float | None:
    """When `receiver` got the room's room_created (unix time), if it did."""
    for hit in receiver.received:
        if hit.json["event"] == "room_created" and hit.json["room"]["room_id"] == room_id:
            return hit.at
    return None


@pytest.mark.timeout(180)
async def test_hostile_receivers_fail_with_their_reason_and_block_no_other_room(
    redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    certs = make_certs(tmp_path)
    async with (
        Emulator(LK_KEY, LK_SECRET, tick_interval=3600) as emu,
        hostile_receiver("slowloris") as slowloris,
        hostile_receiver("never_reads") as never_reads,
        hostile_receiver("reset_mid_answer") as reset,
        tls_receiver(certs.self_signed) as (self_signed_url, _),
        tls_receiver(certs.expired) as (expired_url, _),
        tls_receiver(certs.valid) as (valid_url, valid),
        run_receiver() as good,
    ):
        env = roomkeeper_env(
            redis_server.url,
            emu.url,
            ROOMKEEPER_WEBHOOK_TIMEOUT=f"{TIMEOUT_S:g}",
            ROOMKEEPER_WEBHOOK_RETRY_SCHEDULE=SCHEDULE,
            SSL_CERT_FILE=str(certs.ca),
        )
        hostile = {
            "slowloris": slowloris.url,
            "never-reads": never_reads.url,
            "reset": reset.url,
            "tls-self-signed": self_signed_url,
            "tls-expired": expired_url,
        }
        async with api_process(env) as (url, _), worker_process(env):
            api = Api(url)
            for name, target in hostile.items():
                await api.create(
                    minimal_request(f"h-{name}", webhook_url=target), asynchronous=True
                )
            # Both hanging receivers hold an attempt open; now other rooms' events go out.
            await eventually(
                lambda: _connected(slowloris, never_reads), timeout=30, what="hanging attempts"
            )
            await api.create(minimal_request("h-good", webhook_url=good.at("/hook")))
            await api.create(minimal_request("h-tls-valid", webhook_url=valid_url))
            await good.wait_for(lambda r: created_at(good, "h-good") is not None, timeout=20)
            await valid.wait_for(lambda r: created_at(valid, "h-tls-valid") is not None)
            good_at = created_at(good, "h-good")
            logs = {}
            for name in hostile:
                logs[name] = (
                    await eventually(lambda n=name: settled(api, f"h-{n}"), timeout=60, what=name)
                )[0]
            valid_log = (await eventually(lambda: settled(api, "h-tls-valid")))[0]
            await api.close()

    assert good_at is not None
    for name, log in logs.items():
        attempts = log["attempts"]
        assert log["state"] == "dead", (name, log)  # never a success
        assert len(attempts) == ATTEMPTS, (name, attempts)  # retried on its schedule
        assert all("status" not in a and a["error"] for a in attempts), (name, attempts)
    for name in ("slowloris", "never-reads"):
        for attempt in logs[name]["attempts"]:
            # Each attempt ended at the timeout, however the receiver dribbled.
            assert attempt["error"] == f"timeout after {TIMEOUT_S:g} s", (name, attempt)
            assert attempt["duration_ms"] < (TIMEOUT_S + 1) * 1000, (name, attempt)
        # The other rooms' events arrived while this receiver still held its delivery.
        last = logs[name]["attempts"][-1]
        assert good_at < last["at"] + last["duration_ms"] / 1000, (name, good_at, last)
    assert slowloris.connections == ATTEMPTS and never_reads.connections == ATTEMPTS
    assert reset.connections == ATTEMPTS
    for attempt in logs["tls-self-signed"]["attempts"]:
        assert attempt["error"].startswith("TLS verification failed"), attempt
        assert "self-signed certificate" in attempt["error"], attempt
    for attempt in logs["tls-expired"]["attempts"]:
        assert attempt["error"].startswith("TLS verification failed"), attempt
        assert "certificate has expired" in attempt["error"], attempt
    assert valid_log["state"] == "delivered"
    reasons = {name: log["attempts"][0]["error"][:90] for name, log in logs.items()}
    print(
        f"\nfault: hostile receivers (slowloris, never reads, reset mid-answer, self-signed TLS, "
        f"expired TLS), {ATTEMPTS} attempts each: all {len(logs)} dead, 0 successes, "
        f"hanging attempts ended at {TIMEOUT_S:g} s (max "
        f"{max(a['duration_ms'] for n in ('slowloris', 'never-reads') for a in logs[n]['attempts']):.0f} ms); "
        f"another room's room_created and a valid-TLS one delivered meanwhile; reasons {reasons}"
    )


async def _connected(*receivers: Hostile) -> bool:
    return all(r.connections >= 1 for r in receivers)


def _hwm_kib(pid: int) -> int:
    """A process's peak resident set (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")


@pytest.mark.timeout(120)
async def test_a_50_mb_answer_is_cut_at_4_kib_and_the_worker_stays_small(
    redis_server: RedisServer, redis: Redis
) -> None:
    async with (
        Emulator(LK_KEY, LK_SECRET, tick_interval=3600) as emu,
        hostile_receiver("huge_answer") as huge,
        run_receiver() as good,
    ):
        env = roomkeeper_env(redis_server.url, emu.url, ROOMKEEPER_WEBHOOK_TIMEOUT="10")
        async with api_process(env) as (url, _), worker_process(env) as worker:
            api = Api(url)
            assert worker.proc is not None
            # Warm up every code path once (imports, TLS context, first delivery) before measuring.
            await api.create(minimal_request("big-warm", webhook_url=good.at("/hook")))
            await good.wait_for(lambda r: created_at(good, "big-warm") is not None)
            before = _hwm_kib(worker.proc.pid)
            started = time.monotonic()
            await api.create(minimal_request("big", webhook_url=huge.url))
            log = (await eventually(lambda: settled(api, "big"), timeout=60, what="big answer"))[0]
            elapsed = time.monotonic() - started
            after = _hwm_kib(worker.proc.pid)
            await api.close()

    attempt = log["attempts"][0]
    assert log["state"] == "delivered" and attempt["status"] == 200, log
    assert len(attempt["response"]) == 4096, len(attempt["response"])
    growth_mib = (after - before) / 1024
    assert growth_mib < 20, f"worker peak RSS grew {growth_mib:.1f} MiB"
    print(
        f"\nfault: a receiver answering 200 with a {HUGE_BYTES // 2**20} MB body: delivered, "
        f"{len(attempt['response'])} bytes kept, the worker read then dropped the connection "
        f"({huge.sent / 2**20:.1f} MiB written by the receiver before it was cut), worker peak RSS "
        f"{before / 1024:.0f} -> {after / 1024:.0f} MiB (+{growth_mib:.1f}), {elapsed:.1f} s"
    )
