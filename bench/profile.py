"""CPU per unit of work by phase, from a `py-spy record --subprocesses -f raw` of a benchmark.

    .venv/bin/python -m bench.profile record deliveries --quick   # writes bench/profiles/*.txt
    .venv/bin/python -m bench.profile summary FILE --process "roomkeeper worker" --units 2800 \
        --cpu-us 620   # the bench's measured CPU per delivery: phases scaled to it

Each sample is attributed to the first phase found walking its stack from the leaf up (a socket
write inside redis-py counts as Redis, a JSON dump inside structlog as logging). py-spy samples
only threads that are runnable, so on a quiet machine samples / rate is CPU seconds (on a loaded
one, scale with `--cpu-us`, see `summary`). The raw files stay out of git
(bench/profiles/ is ignored); the README keeps the table.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

RATE = 200
OUT = Path(__file__).parent / "profiles"

# (phase, frame pattern), tried in order for each frame from the leaf up.
PHASES: list[tuple[str, re.Pattern[str]]] = [
    ("logging", re.compile(r"[(/]structlog/|[(/]logging/|worker/logs\.py")),
    ("signing", re.compile(r"webhooks/signing\.py|[(/]jwt/|hmac\.py|handlers/auth\.py")),
    ("Redis round trips", re.compile(r"[(/]redis/|hiredis|[(/]arq/connections|schedule\.py")),
    ("LiveKit calls", re.compile(r"[(/]livekit/api/|worker/livekit\.py")),
    (
        "HTTP (aiohttp, webhooks' http1 pool)",
        re.compile(r"[(/]aiohttp/|[(/]yarl/|[(/]multidict/|httptools|webhooks/(attempt|http1)\.py"),
    ),
    (
        "parse / serialise",
        re.compile(
            r"[(/]json/|orjson|[(/]msgpack/|[(/]pydantic|google/protobuf|handlers/jsonbody|"
            r"rooms/request\.py|webhooks/bodies\.py"
        ),
    ),
    ("imports / start-up", re.compile(r"ssl\.py")),
]
OURS = re.compile(r"\((worker|handlers)/")
# Fallbacks, when no phase above and none of our frames is on the stack.
LOOP = re.compile(r"asyncio/|uvloop|selectors\.py")
UVLOOP = re.compile(r"^Runner\.run |^run \(worker/loop\.py")
IDLE = re.compile(r"Selector\.select|concurrent/futures/thread\.py")


def phase_of(frames: list[str]) -> str:
    """The phase of one stack (root first)."""
    if frames and IDLE.search(frames[-1]):
        return "idle (waiting)"
    if frames and UVLOOP.search(frames[-1]):
        return "event loop"  # uvloop's own C work (socket I/O, callbacks) shows as its run
    if any("<frozen importlib" in f for f in frames):
        return "imports / start-up"
    for frame in reversed(frames):
        for name, pattern in PHASES:
            if pattern.search(frame):
                return name
    if any(OURS.search(f) for f in frames):
        return "other (our code)"
    return "event loop"


def summary(
    path: Path, process: str, units: int, rate: int = RATE, cpu_us: float | None = None
) -> dict[str, float]:
    """CPU-µs per unit by phase for the processes whose command line contains `process`.

    `cpu_us`: the process's measured CPU time per unit (the benchmark's `CPU per …` row); the
    phases are scaled to add up to it. py-spy samples a thread whenever the OS has it runnable,
    and on a loaded machine a runnable thread is often waiting for a core, so unscaled sample
    counts overstate CPU time by the machine's overload (4 to 6 times at a load of 10 on 2 cores);
    the shares stay right, since the waiting falls on every phase alike."""
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        # Nested `process N:"cmd"` frames: the innermost one is the sampled process.
        procs = [i for i, f in enumerate(frames) if f.startswith("process ")]
        if not procs or process not in frames[procs[-1]]:
            continue
        counts[phase_of(frames[procs[-1] + 1 :])] += int(n)
    per_unit = 1e6 / rate / units
    # Start-up (imports) is not work per unit: it is shown apart, like idle waits, and left out of
    # the total the phases are scaled to.
    apart = ("imports / start-up", "idle (waiting)")
    names = [name for name, _ in PHASES if name not in apart] + ["other (our code)", "event loop"]
    table = {name: counts[name] * per_unit for name in names}
    total = sum(table.values())
    if cpu_us is not None and total:
        table = {name: us * cpu_us / total for name, us in table.items()}
    table["total CPU"] = sum(table.values())
    for name in apart:
        table[name] = counts[name] * per_unit
    return table


def record(bench: str, extra: list[str]) -> Path:
    """Run `python -m bench.<bench>` under py-spy; the raw file's path."""
    OUT.mkdir(exist_ok=True)
    out = OUT / f"{bench}.txt"
    spy = Path(sys.executable).with_name("py-spy")
    cmd = [str(spy), "record", "-r", str(RATE), "--subprocesses", "-f", "raw", "-o", str(out)]
    subprocess.run([*cmd, "--", sys.executable, "-m", f"bench.{bench}", *extra], check=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("bench")
    rec.add_argument("args", nargs=argparse.REMAINDER)
    summ = sub.add_parser("summary")
    summ.add_argument("file", type=Path)
    summ.add_argument("--process", required=True, help="a substring of the command line")
    summ.add_argument("--units", type=int, required=True, help="rooms, deliveries or events")
    summ.add_argument(
        "--cpu-us",
        type=float,
        help="the process's measured CPU µs per unit (the benchmark's row): scale the phases to it",
    )
    args = parser.parse_args()
    if args.cmd == "record":
        print(record(args.bench, args.args))
        return
    table = summary(args.file, args.process, args.units, cpu_us=args.cpu_us)
    for name, us in table.items():
        print(f"  {name:22} {us:8.1f} µs")


if __name__ == "__main__":
    main()
