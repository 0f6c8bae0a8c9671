"""Start times in create-rooms files: each line's `start_at`, and the dry run's rooms per day."""

from __future__ import annotations

import datetime
from collections import Counter

from roomkeeper.bulkfile import Line


def start_at_of(line: Line) -> int | None:
    """The line's start time in unix seconds (None: created at once)."""
    request = line.request or {}
    value = request.get("start_at", request.get("startAt"))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def iso_utc(unix_s: int | None) -> str:
    """A start time as the report writes it (ISO 8601, UTC; '' for none)."""
    if unix_s is None:
        return ""
    return datetime.datetime.fromtimestamp(unix_s, datetime.UTC).isoformat()


def per_day(lines: list[Line], now: float) -> list[str]:
    """The dry run's schedule: how many rooms start on each day (this machine's time zone)."""
    days: Counter[str] = Counter()
    at_once = 0
    for line in lines:
        start = start_at_of(line)
        if start is None or start <= now:
            at_once += 1
            continue
        days[datetime.datetime.fromtimestamp(start).astimezone().strftime("%Y-%m-%d %a")] += 1
    if not days:
        return []
    zone = datetime.datetime.now().astimezone().strftime("%Z, UTC%z")
    out = [f"  scheduled per day ({zone}):"]
    out += [f"    {day}  {n} rooms" for day, n in sorted(days.items())]
    out.append(f"    created at once (no start_at, or in the past)  {at_once} rooms")
    return out
