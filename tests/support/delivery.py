"""Helpers for the delivery tests: emitting events straight into Redis, reading the delivery log,
a fake DNS server, a TLS receiver with an untrusted certificate, and the SSRF probe.

The SSRF probe (`python -m tests.support.delivery ssrf-probe`) runs inside a fresh network
namespace made by the test (`unshare --net --mount`, with `--user --map-root-user` when not
root): only loopback exists there, and
`/etc/resolv.conf` is bind-mounted to point at a fake DNS server the probe serves on 127.0.0.1:53.
So the real `roomkeeper worker`, resolving with the system resolver, sees a name that resolves to
a private address, and no packet for 10.0.0.1 and friends can leave this machine even if the
guard under test were broken (the kernel would answer "network unreachable" instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from redis.asyncio import Redis

from tests.support.api import API_KEY, API_SECRET, LK_KEY, LK_SECRET, WEBHOOK_SECRET
from tests.support.servers import ROOT, Receiver, RedisServer, free_port
from worker import keys
from worker.queue.schedule import Schedule
from worker.settings import Settings
from worker.webhooks.bodies import notify_body
from worker.webhooks.engine import SCHEDULE_NAME, Outbox
from worker.webhooks.stored import attempt_log

# --- emitting and reading ----------------------------------------------------------------------


def room_object(room_id: str) -> dict[str, Any]:
    """A plausible `room` object for events emitted straight into Redis."""
    return {
        "sid": f"RM_{room_id}",
        "room_id": room_id,
        "empty_timeout": 1800,
        "max_participants": 0,
        "creation_time": str(int(time.time())),
        "enabled_codecs": [],
        "metadata": "",
        "num_participants": 0,
    }


async def emit(
    redis: Redis,
    settings: Settings,
    room_id: str,
    url: str | None,
    count: int = 1,
    event: str = "participant_joined",
) -> list[tuple[str, list[str]]]:
    """Emit `count` events of one room, in order, each in its own transaction like the worker
    does; returns (event_id, delivery_ids) per event."""
    outbox = Outbox(settings, Schedule(redis, SCHEDULE_NAME))
    out = []
    for seq in range(count):
        event_id = str(uuid.uuid4())
        body = notify_body(event, room_object(room_id), event_id=event_id, extra={"seq": seq})
        async with redis.pipeline(transaction=True) as pipe:
            ids = outbox.emit(
                pipe,
                event_id=event_id,
                event=event,
                room_id=room_id,
                body=body,
                room_webhook_url=url,
            )
            await pipe.execute()
        out.append((event_id, ids))
    return out


async def record(redis: Redis, delivery_id: str) -> dict[str, Any]:
    """A delivery's record with its attempt log parsed."""
    rec: dict[str, Any] = await redis.hgetall(keys.delivery(delivery_id))
    rec["attempt_log"] = attempt_log(rec.pop("log", ""))
    return rec


async def settled(redis: Redis, delivery_ids: list[str]) -> bool:
    """Whether none of `delivery_ids` is pending any more."""
    for did in delivery_ids:
        if await redis.hget(keys.delivery(did), "state") in (None, "pending"):
            return False
    return True


async def queue_drained(redis: Redis) -> bool:
    """Whether the delivery schedule holds nothing (every queue empty and released)."""
    return int(await redis.zcard(keys.schedule_due(SCHEDULE_NAME))) == 0


# --- a TLS receiver whose certificate nobody trusts ---------------------------------------------


@contextlib.asynccontextmanager
async def untrusted_tls_receiver() -> AsyncIterator[tuple[str, Receiver]]:
    """An HTTPS receiver on 127.0.0.1 with a fresh self-signed certificate (needs `openssl`)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is needed to make a test certificate: apt-get install openssl")
    with tempfile.TemporaryDirectory(prefix="roomkeeper-tls-") as tmp:
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        receiver = Receiver()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", receiver.handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
        receiver.url = f"https://127.0.0.1:{port}"
        try:
            yield receiver.url, receiver
        finally:
            await runner.cleanup()


# --- a fake DNS server --------------------------------------------------------------------------


class FakeDns(asyncio.DatagramProtocol):
    """Answers A queries from a fixed table (NXDOMAIN for anything else)."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = {name.rstrip(".").lower(): ip for name, ip in table.items()}
        self.queries: list[str] = []
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        query = DNSRecord.parse(data)
        name = str(query.q.qname).rstrip(".").lower()
        self.queries.append(name)
        reply = query.reply()
        if name not in self.table:
            reply.header.rcode = RCODE.NXDOMAIN
        elif query.q.qtype == QTYPE.A:
            reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(self.table[name]), ttl=0))
        self.transport.sendto(reply.pack(), addr)


# --- the SSRF probe, run inside a network namespace ---------------------------------------------

INTERNAL_NAME = "internal.example.test"  # the fake DNS says 10.1.2.3
ALLOWED_NAME = "allowed.example.test"  # the fake DNS says 127.0.0.2, the one allowed address


def ssrf_table(port: int) -> dict[str, str]:
    """Target URL → the reason the guard must give (a fragment of it)."""
    return {
        f"http://127.0.0.1:{port}/t": "loopback address 127.0.0.1",
        f"http://localhost:{port}/t": "localhost resolves only to loopback address",
        f"http://[::1]:{port}/t": "loopback address ::1",
        f"http://[::ffff:127.0.0.1]:{port}/t": "loopback address 127.0.0.1",
        f"http://0.0.0.0:{port}/t": "unspecified address 0.0.0.0",
        f"http://[::]:{port}/t": "unspecified address ::",
        "http://169.254.169.254/latest/meta-data": "link-local address 169.254.169.254",
        f"http://10.0.0.1:{port}/t": "private address 10.0.0.1",
        f"http://172.16.0.1:{port}/t": "private address 172.16.0.1",
        f"http://192.168.1.1:{port}/t": "private address 192.168.1.1",
        f"http://100.64.0.1:{port}/t": "CGNAT address 100.64.0.1",
        f"http://[fc00::1]:{port}/t": "private address fc00::1",
        f"http://[64:ff9b::a00:1]:{port}/t": "private address 10.0.0.1 (embedded in",
        f"http://0x7f000001:{port}/t": "0x7f000001 resolves only to loopback address 127.0.0.1",
        f"http://{INTERNAL_NAME}:{port}/t": f"{INTERNAL_NAME} resolves only to private address",
    }


def ssrf_controls(port: int) -> list[str]:
    """Targets that must be delivered, proving the probe's receiver and DNS path work."""
    return [f"http://127.0.0.2:{port}/control", f"http://{ALLOWED_NAME}:{port}/control-by-name"]


async def _ssrf_probe() -> dict[str, Any]:
    from tests.support.procs import roomkeeper_env, worker_process

    loop = asyncio.get_running_loop()
    dns = FakeDns({INTERNAL_NAME: "10.1.2.3", ALLOWED_NAME: "127.0.0.2"})
    transport, _ = await loop.create_datagram_endpoint(lambda: dns, local_addr=("127.0.0.1", 53))
    redis_server = RedisServer()
    redis_server.start()
    receiver = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    # Every local address, both families: any loopback spelling that got through would land here.
    await web.TCPSite(runner, None, port).start()
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    env = roomkeeper_env(
        redis_server.url,
        "http://127.0.0.1:9",
        ROOMKEEPER_WEBHOOK_ALLOWED_CIDRS="127.0.0.2/32",
        ROOMKEEPER_WEBHOOK_TIMEOUT="2",
    )
    settings = Settings(
        _env_file=None,
        livekit_api_key=LK_KEY,
        livekit_api_secret=LK_SECRET,
        api_key=API_KEY,
        api_secret=API_SECRET,
        webhook_secret=WEBHOOK_SECRET,
        webhook_retry_schedule=env["ROOMKEEPER_WEBHOOK_RETRY_SCHEDULE"],
    )
    table = ssrf_table(port)
    targets = [*table, *ssrf_controls(port)]
    try:
        async with worker_process(env, "ssrf-worker"):
            ids: dict[str, str] = {}
            for i, url in enumerate(targets):
                ((_, (did,)),) = await emit(redis, settings, f"ssrf-{i}", url)
                ids[url] = did
            deadline = time.monotonic() + 30
            while not await settled(redis, list(ids.values())):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            results = {url: await record(redis, did) for url, did in ids.items()}
    finally:
        await redis.aclose()
        await runner.cleanup()
        transport.close()
        redis_server.cleanup()
    return {
        "table": {url: results[url] for url in table},
        "expected": table,
        "controls": {url: results[url] for url in ssrf_controls(port)},
        "received": [r.path for r in receiver.received],
        "dns_queries": dns.queries,
    }


def run_ssrf_probe(timeout: float = 60.0) -> dict[str, Any]:
    """Run the probe in a fresh network and mount namespace; returns its findings."""
    missing = [t for t in ("unshare", "ip", "mount") if shutil.which(t) is None]
    if missing:
        raise RuntimeError(f"the SSRF probe needs {', '.join(missing)} (util-linux, iproute2)")
    with tempfile.NamedTemporaryFile("w", prefix="roomkeeper-resolv-", suffix=".conf") as conf:
        conf.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        conf.flush()
        script = (
            "ip link set lo up && "
            f"mount --bind {conf.name} /etc/resolv.conf && "
            f"exec {sys.executable} -m tests.support.delivery ssrf-probe"
        )
        # Not root: a user namespace first (`-r`, root mapped to us), which owns the new network
        # and mount namespaces, so the bind mount and port 53 are allowed there.
        user_ns = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
        proc = subprocess.run(
            ["unshare", *user_ns, "--net", "--mount", "sh", "-c", script],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise AssertionError(
            f"SSRF probe failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result


if __name__ == "__main__" and sys.argv[1:] == ["ssrf-probe"]:
    print(json.dumps(asyncio.run(_ssrf_probe())), flush=True)
