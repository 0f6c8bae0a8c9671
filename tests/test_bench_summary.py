"""`bench.summary` reads issue 12's goal table from the JSON lines of one `make bench` run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.summary import ROWS, results, table

BENCH = Path(__file__).parent.parent / "bench"

# One JSON line per benchmark, in the shape each prints (the labels are checked against the
# benchmarks' own source below, so a renamed row fails here rather than in a `make bench`).
LINES: dict[str, dict[str, Any]] = {
    "create.py": {
        "bench": "create with Prefer: respond-async, 32 connections, 10 s each",
        "ratio (roomkeeper, AOF everysec ÷ bare)": "0.46",
    },
    "timers.py": {
        "bench": "timer precision: 10000 rooms, deadlines over 60 s, 1 worker process(es)",
        "roomkeeper DeleteRoom lateness": "p50    93.7 ms   p99   815.6 ms   max  1102.3 ms"
        "   earliest    -0.9 ms",
        "Redis memory per tracked room": "4.99 KiB",
    },
    "deliveries.py": {
        "bench": "deliveries",
        "parallel": {"rate": 1200.0},
        "bare_parallel": {"rate": 3000.0},
        "serial": {"rate": 400.0},
        "bare_serial": {"rate": 1000.0},
        "bytes_per_delivery": 801.2,
    },
    "inbound.py": {
        "bench": "LiveKit events in: 5000 signed participant_joined over 200 rooms",
        "ratio forwarded ÷ bare": "0.30",
    },
}


def log_text() -> str:
    return "\n".join(["some output", *(json.dumps(r) for r in LINES.values()), "ratio 1.0"])


def test_the_labels_read_are_the_ones_the_benchmarks_print() -> None:
    for module, record in LINES.items():
        source = (BENCH / module).read_text(encoding="utf-8")
        for label in record:
            if label != "bench":
                assert f'"{label}"' in source, (module, label)


def test_each_row_gets_its_figure_and_whether_it_meets_its_goal() -> None:
    rows = table(results(log_text()))
    assert [what for what, *_ in rows] == [row.what for row in ROWS]
    assert [(figure, met) for _, _, figure, _, met in rows] == [
        ("not run", "—"),  # bulk did not run
        ("0.40", "met"),
        ("0.40", "NOT met"),
        ("0.30", "met"),
        ("0.46", "met"),
        ("815.6 ms", "NOT met"),
        ("-0.9 ms", "met"),
        ("4.99 KiB", "met"),
        ("801 B", "NOT met"),
    ]
