"""`roomkeeper dev`: one command brings up everything, its example request works, Ctrl-C stops it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.servers import ROOT, free_port

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
    assert (workdir / ".dev" / "redis").is_dir()  # Redis kept its AOF data locally
