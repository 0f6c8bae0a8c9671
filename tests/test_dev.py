"""`roomkeeper dev`: one command brings up everything, its example request works, Ctrl-C stops it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from roomkeeper.dev import DEV_ENV
from tests.support.servers import ROOT, free_port
from worker import keys
from worker.webhooks.signing import body_hmac

pytestmark = pytest.mark.slow  # real processes or injected faults


def _wait_for(path: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace")
        if pattern in text:
            return text
        if proc.poll() is not None:
            raise AssertionError(f"roomkeeper dev exited {proc.returncode}:\n{text}")
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not printed in {timeout} s:\n{path.read_text()}")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_dev_runs_everything_and_its_printed_request_creates_a_signed_room() -> None:
    ports = {name: free_port() for name in ("port", "livekit-port", "redis-port", "receiver-port")}
    workdir = Path(tempfile.mkdtemp(prefix="roomkeeper-dev-"))
    out = workdir / "out.log"
    args = [sys.executable, "-m", "roomkeeper", "dev"]
    for name, port in ports.items():
        args += [f"--{name}", str(port)]
    with out.open("wb") as sink:
        proc = subprocess.Popen(args, cwd=workdir, stdout=sink, stderr=subprocess.STDOUT,
                                env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})  # fmt: skip
    try:
        text = _wait_for(out, "HASH-SIGNATURE", proc, 60)
        curl = text[text.index("curl -s") :].split("\n\n")[0]
        answer = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30)
        body = json.loads(answer.stdout)
        assert body["status"] is True and body["room_info"]["name"] == "room01", body
        log = _wait_for(out, "[receiver] room_created", proc, 30)
        line = next(x for x in log.splitlines() if x.startswith("[receiver] room_created"))
        assert "jwt ok, standard-webhooks ok" in line
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(40)
    assert code == 0, out.read_text()
    assert not any(_listening(p) for p in ports.values())  # every child stopped
    home = workdir / ".dev" / "-".join(str(p) for p in ports.values())
    assert (home / "redis").is_dir()  # Redis kept its AOF data locally, for this port set
    assert (home / "emulator-rooms.json").is_file()  # and the emulator its rooms


def _start(workdir: Path, ports: dict[str, int], out: Path, *extra: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "roomkeeper", "dev", *extra]
    for name, port in ports.items():
        args += [f"--{name}", str(port)]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "ROOMKEEPER_RECONCILE_INTERVAL": "0.5"}
    with out.open("ab") as sink:
        return subprocess.Popen(args, cwd=workdir, stdout=sink, stderr=subprocess.STDOUT, env=env)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(40)


def _curl(text: str) -> dict[str, object]:
    curl = text[text.rindex("curl -s") :].split("\n\n")[0]
    answer = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30)
    body: dict[str, object] = json.loads(answer.stdout)
    return body


def _is_active(api_port: int, room_id: str) -> bool:
    body = json.dumps({"room_id": room_id}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{api_port}/auth/room/isRoomActive",
        data=body,
        headers={
            "Content-Type": "application/json",
            "API-KEY": DEV_ENV["ROOMKEEPER_API_KEY"],
            "HASH-SIGNATURE": body_hmac(body, DEV_ENV["ROOMKEEPER_API_SECRET"]),
        },
    )
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - our own local API
        answer = json.loads(resp.read())
    # An answer without `is_active` is an error of the request itself: say which.
    assert "is_active" in answer, answer
    return bool(answer["is_active"])


def _reconciled_since(redis_port: int, since_ms: float) -> bool:
    # The reconcile timer re-arms itself at the end of each run: its due time says one ran.
    with redis.Redis(port=redis_port, decode_responses=True) as r:
        score = r.zscore(keys.schedule_due(keys.TIMERS), "reconcile")
    return score is not None and score > since_ms + 500


def _until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout} s")


def test_two_dev_instances_on_other_ports_share_nothing_and_keep_restores_rooms() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="roomkeeper-dev-"))
    first = {name: free_port() for name in ("port", "livekit-port", "redis-port", "receiver-port")}
    second = {name: free_port() for name in first}
    out_a, out_b = workdir / "a.log", workdir / "b.log"
    a = _start(workdir, first, out_a)
    b = _start(workdir, second, out_b)
    try:
        text_a = _wait_for(out_a, "HASH-SIGNATURE", a, 60)
        _wait_for(out_b, "HASH-SIGNATURE", b, 60)
        assert _curl(text_a)["status"] is True
        _wait_for(out_a, "[receiver] room_created", a, 30)

        # The second instance has its own Redis and receiver: no room01, no events.
        assert _is_active(first["port"], "room01") and not _is_active(second["port"], "room01")
        assert "[receiver]" not in out_b.read_text()
        assert _stop(a) == 0

        # Restarted with --keep: Redis and the emulator both remember room01, so reconciliation
        # (every 0.5 s here) finds it in LiveKit and ends nothing.
        restarted = time.time() * 1000
        a = _start(workdir, first, out_a, "--keep")
        _until(lambda: out_a.read_text().count("HASH-SIGNATURE") == 2, "second start")
        _until(lambda: _reconciled_since(first["redis-port"], restarted), "a reconciliation")
        assert _is_active(first["port"], "room01")
        assert "session_ended" not in out_a.read_text()
        assert _stop(a) == 0

        # Without --keep a start is clean: nothing remembered, so nothing to end either.
        a = _start(workdir, first, out_a)
        _until(lambda: out_a.read_text().count("HASH-SIGNATURE") == 3, "third start")
        assert not _is_active(first["port"], "room01")
    finally:
        codes = [_stop(p) for p in (a, b) if p.poll() is None]
    assert codes == [0, 0]
    text = out_a.read_text() + out_b.read_text()
    assert "session_ended" not in text
    assert "\x1b[" not in text  # logs to a file carry no colour codes
    assert DEV_ENV["ROOMKEEPER_WEBHOOK_SECRET"] in text  # printed beside the API secret
    dirs = sorted(p.name for p in (workdir / ".dev").iterdir())
    assert dirs == sorted("-".join(str(v) for v in ports.values()) for ports in (first, second))
