"""`roomkeeper dev`: everything on this machine, one command, Ctrl-C stops it all.

Starts a private `redis-server` (AOF on), the LiveKit emulator, the API and a worker as child
processes, plus a demo webhook receiver in this process that prints each event and whether its
signatures verify. Prints the API URL, the dev credentials and a ready-to-paste request.

State lives in `.dev/<api>-<livekit>-<redis>-<receiver port>/`, one directory per port set, so a
second instance on other ports shares nothing with the first. Each start is clean (that
directory emptied) unless `--keep`: then Redis keeps its data and the emulator its rooms (saved in
`emulator-rooms.json` when it stops), so the rooms roomkeeper remembers still exist in LiveKit and
reconciliation has nothing to end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from worker.webhooks.signing import body_hmac

DEV_ENV = {
    "LIVEKIT_API_KEY": "devkey",
    "LIVEKIT_API_SECRET": "dev-livekit-secret-0123456789abcdef",
    "ROOMKEEPER_API_KEY": "plugnmeet",
    "ROOMKEEPER_API_SECRET": "zumyyYWqv7KR2kUqvYdq4z4sXg7XTBD2ljT6",
    "ROOMKEEPER_WEBHOOK_SECRET": "whsec_"
    + base64.b64encode(b"roomkeeper-dev-webhook-secret!!!").decode(),
    "ROOMKEEPER_WEBHOOK_ALLOWED_CIDRS": "127.0.0.0/8,::1/128",
    "ROOMKEEPER_LOG_FORMAT": "console",  # coloured only on a terminal (see worker.logs)
}


def state_dir(args: argparse.Namespace) -> Path:
    """This port set's own directory under `.dev/`."""
    ports = (args.port, args.livekit_port, args.redis_port, args.receiver_port)
    return Path(".dev") / "-".join(str(p) for p in ports)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _wait_port(port: int, proc: subprocess.Popen[bytes], name: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"roomkeeper dev: {name} exited with code {proc.returncode}")
        if not _port_free(port):
            return
        time.sleep(0.05)
    raise SystemExit(f"roomkeeper dev: {name} did not start listening on port {port}")


def example_request(receiver_url: str) -> bytes:
    """The seed document's example, with its webhook going to the demo receiver."""
    return json.dumps(
        {
            "room_id": "room01",
            "metadata": {
                "room_title": "Test room",
                "welcome_message": "Welcome to room",
                "webhook_url": receiver_url,
                "room_features": {
                    "allow_webcams": True,
                    "room_duration": 0,
                    "chat_features": {"allow_chat": True},
                },
            },
        },
        separators=(",", ":"),
    ).encode()


async def _receiver(port: int, env: dict[str, str]) -> web.AppRunner:
    """A demo webhook receiver that prints what arrives and checks both signatures."""
    from livekit import api
    from standardwebhooks import Webhook

    verifier = api.WebhookReceiver(
        api.TokenVerifier(env["ROOMKEEPER_API_KEY"], env["ROOMKEEPER_API_SECRET"])
    )
    standard = Webhook(env["ROOMKEEPER_WEBHOOK_SECRET"].split(",")[0])

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        checks = []
        try:
            verifier.receive(body.decode(), request.headers.get("Authorization", ""))
            checks.append("jwt ok")
        except Exception as exc:
            checks.append(f"jwt FAILED ({exc})")
        try:
            standard.verify(body, dict(request.headers))
            checks.append("standard-webhooks ok")
        except Exception as exc:
            checks.append(f"standard-webhooks FAILED ({exc})")
        event = json.loads(body)
        room = event.get("room", {})
        print(
            f"[receiver] {event.get('event')} room={room.get('room_id')} sid={room.get('sid')} "
            f"id={event.get('id')} ({', '.join(checks)})",
            flush=True,
        )
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def main(args: argparse.Namespace) -> int:
    """Run the local stack until interrupted."""
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        print(
            "roomkeeper dev: redis-server is not installed; `make dev` installs it, or run "
            "`sudo apt-get install -y redis-server`",
            file=sys.stderr,
        )
        return 2
    for name, port in (
        ("API", args.port),
        ("LiveKit emulator", args.livekit_port),
        ("redis-server", args.redis_port),
        ("webhook receiver", args.receiver_port),
    ):
        if not _port_free(port):
            print(f"roomkeeper dev: port {port} ({name}) is in use; pick another with --help")
            return 2
    env = {**DEV_ENV, **{k: v for k, v in os.environ.items() if k in DEV_ENV}}
    home = state_dir(args)
    if home.exists() and not args.keep:
        shutil.rmtree(home)
    data = home / "redis"
    data.mkdir(parents=True, exist_ok=True)
    env |= {
        "LIVEKIT_URL": f"http://127.0.0.1:{args.livekit_port}",
        "ROOMKEEPER_REDIS_URL": f"redis://127.0.0.1:{args.redis_port}/0",
        "ROOMKEEPER_PORT": str(args.port),
        "ROOMKEEPER_WORKER_HEALTH_FILE": str((home / "worker.health").resolve()),
    }
    child_env = {**os.environ, **env}
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(name: str, cmd: list[str], port: int | None) -> None:
        proc = subprocess.Popen(cmd, env=child_env)  # noqa: S603 - our own commands
        procs.append((name, proc))
        if port is not None:
            _wait_port(port, proc, name)

    py = sys.executable
    signal.signal(signal.SIGTERM, _interrupt)  # stop the children on SIGTERM too, not only Ctrl-C
    # Ctrl-C must stop everything even when started from a background job or a script, which
    # hand their children SIGINT ignored (Python then never installs its own handler).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        spawn(
            "redis-server",
            [redis_bin, "--port", str(args.redis_port), "--bind", "127.0.0.1",
             "--dir", str(data.resolve()), "--appendonly", "yes", "--appendfsync", "everysec",
             "--save", "", "--loglevel", "warning"],
            args.redis_port,
        )  # fmt: skip
        spawn(
            "LiveKit emulator",
            [py, "-m", "emulator", "--port", str(args.livekit_port),
             "--webhook-url", f"http://127.0.0.1:{args.port}/webhook",
             "--state-file", str((home / "emulator-rooms.json").resolve())],
            args.livekit_port,
        )  # fmt: skip
        spawn("API", [py, "-m", "roomkeeper", "api"], args.port)
        spawn("worker", [py, "-m", "roomkeeper", "worker"], None)
        asyncio.run(_serve(args, env, procs, home))
    except KeyboardInterrupt:
        pass
    finally:
        for _, proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in reversed(procs):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        print("roomkeeper dev: stopped", flush=True)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


async def _serve(
    args: argparse.Namespace, env: dict[str, str], procs: list[tuple[str, Any]], home: Path
) -> None:
    runner = await _receiver(args.receiver_port, env)
    receiver_url = f"http://127.0.0.1:{args.receiver_port}/hook"
    body = example_request(receiver_url)
    signature = body_hmac(body, env["ROOMKEEPER_API_SECRET"])
    api_url = f"http://127.0.0.1:{args.port}"
    print(
        f"""
roomkeeper is running (Ctrl-C stops everything)
  API              {api_url}   (health: {api_url}/healthz)
  API key          {env["ROOMKEEPER_API_KEY"]}
  API secret       {env["ROOMKEEPER_API_SECRET"]}
  LiveKit          {env["LIVEKIT_URL"]} (emulator; key {env["LIVEKIT_API_KEY"]})
  Webhook secret   {env["ROOMKEEPER_WEBHOOK_SECRET"].split(",")[0]} (Standard Webhooks)
  Redis            {env["ROOMKEEPER_REDIS_URL"]} (AOF in {home / "redis"})
  State            {home} ({"kept from the last run" if args.keep else "fresh; --keep keeps it"})
  Webhook receiver {receiver_url} (prints what it gets below)

Create a room (the signature is the HMAC-SHA256 of this exact body):

curl -s {api_url}/auth/room/create \\
  -H 'Content-Type: application/json' \\
  -H 'API-KEY: {env["ROOMKEEPER_API_KEY"]}' \\
  -H 'HASH-SIGNATURE: {signature}' \\
  -d {shlex.quote(body.decode())}
""",
        flush=True,
    )
    try:
        # Polled, not awaited in threads: a thread blocked in wait() would stall Ctrl-C.
        while all(proc.poll() is None for _, proc in procs):  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        for name, proc in procs:
            if proc.poll() is not None:
                print(f"roomkeeper dev: {name} exited with code {proc.returncode}; stopping")
    finally:
        await runner.cleanup()
