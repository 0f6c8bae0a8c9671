"""Issue 12's goal table from one `make bench` run: each row's figure, its goal, met or not.

`make bench` writes every benchmark's output to `bench/results/last.log`, then runs

    .venv/bin/python -m bench.summary bench/results/last.log

which reads the JSON line each benchmark prints (`bench.common.report`, and the deliveries
bench's own) and prints one table, so the README's figures all come from the same run. A row
whose benchmark did not run (or failed before its JSON line) shows `not run`.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Results = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Row:
    """One goal: what is measured, how to read it from the results, and the goal."""

    what: str
    bench: str  # the start of the benchmark's title
    read: Callable[[dict[str, Any]], float]
    unit: str
    goal: float
    at_least: bool  # the figure must be >= goal (else <=)
    before: str  # the figure the issue measured before its work
    digits: int = 2

    def met(self, value: float) -> bool:
        """Whether `value` meets the goal."""
        return value >= self.goal if self.at_least else value <= self.goal


def number(text: str, label: str = "") -> float:
    """The first number after `label` in a printed figure (`"p99  815.6 ms"`, `"9.42 KiB"`)."""
    match = re.search(rf"{re.escape(label)}\s*(-?[\d,]+(?:\.\d+)?)", text)
    if match is None:
        raise ValueError(f"no number after {label!r} in {text!r}")
    return float(match.group(1).replace(",", ""))


def _lateness(label: str) -> Callable[[dict[str, Any]], float]:
    return lambda r: number(r["roomkeeper DeleteRoom lateness"], label)


ROWS = [
    Row("bench.bulk: submit → in LiveKit and room_created received (÷ CreateRoom direct)",
        "bulk create", lambda r: number(r["ratio roomkeeper / baseline"]), "", 0.4, True,
        "0.12 to 0.24"),
    Row("bench.deliveries: many rooms (÷ bare POST loop)", "deliveries",
        lambda r: r["parallel"]["rate"] / r["bare_parallel"]["rate"], "", 0.4, True,
        "0.13 to 0.17"),
    Row("bench.deliveries: one room, ordered (÷ bare POST loop, 1 at a time)", "deliveries",
        lambda r: r["serial"]["rate"] / r["bare_serial"]["rate"], "", 0.5, True, "0.21 to 0.26"),
    Row("bench.inbound: LiveKit event in → forwarded (÷ bare verifying handler)",
        "LiveKit events in", lambda r: number(r["ratio forwarded ÷ bare"]), "", 0.3, True,
        "0.10 to 0.11"),
    Row("bench.create: respond-async accepted (÷ bare aiohttp handler)", "create with",
        lambda r: number(r["ratio (roomkeeper, AOF everysec ÷ bare)"]), "", 0.45, True,
        "0.27 to 0.35"),
    Row("bench.timers: DeleteRoom lateness p99", "timer precision", _lateness("p99"), " ms",
        250.0, False, "347 to 811 ms", 1),
    Row("bench.timers: earliest DeleteRoom (negative: early)", "timer precision",
        _lateness("earliest"), " ms", -50.0, True, "971 ms early", 1),
    Row("Redis memory per tracked room (bench.timers)", "timer precision",
        lambda r: number(r["Redis memory per tracked room"]), " KiB", 5.0, False,
        "9.5 to 15 KiB"),
    Row("Redis kept per delivered event (bench.deliveries)", "deliveries",
        lambda r: r["bytes_per_delivery"], " B", 800.0, False, "1,700 to 2,100 B", 0),
]  # fmt: skip


def results(log: str) -> Results:
    """Each benchmark's JSON line in a `make bench` log, by title (the last of a title wins)."""
    out: Results = {}
    for line in log.splitlines():
        if not line.startswith('{"bench"'):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        out[str(record["bench"])] = record
    return out


def find(found: Results, title: str) -> dict[str, Any] | None:
    """The results of the benchmark whose title starts with `title`."""
    return next((r for t, r in found.items() if t.startswith(title)), None)


def table(found: Results) -> list[tuple[str, str, str, str, str]]:
    """(what, the issue's figure, this run's, goal, met) for every row."""
    out = []
    for row in ROWS:
        goal = f"{'≥' if row.at_least else '≤'} {row.goal:g}{row.unit}"
        record = find(found, row.bench)
        if record is None:
            out.append((row.what, row.before, "not run", goal, "—"))
            continue
        value = row.read(record)
        figure = f"{value:,.{row.digits}f}{row.unit}"
        out.append((row.what, row.before, figure, goal, "met" if row.met(value) else "NOT met"))
    return out


def main() -> None:
    """Print the table (Markdown, so it can go into the README as it is)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path, help="a `make bench` log (bench/results/last.log)")
    args = parser.parse_args()
    rows = table(results(args.log.read_text(encoding="utf-8")))
    print("| what | issue 12 measured | this run | goal | |")
    print("|---|---|---|---|---|")
    for what, before, figure, goal, met in rows:
        print(f"| {what} | {before} | {figure} | {goal} | {met} |")


if __name__ == "__main__":
    main()
