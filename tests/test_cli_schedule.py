"""`roomkeeper create-rooms` with a `start_at` column: a term scheduled from one CSV, once."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.support.api import eventually, livekit_calls
from tests.support.servers import Receiver
from tests.support.stack import Stack
from tests.test_cli_create_rooms import create_rooms, deliveries_drained, read_report, write_csv
from worker import keys


def _iso(unix_s: int, hours: int) -> str:
    zone = datetime.timezone(datetime.timedelta(hours=hours))
    return datetime.datetime.fromtimestamp(unix_s, zone).isoformat()


@pytest.mark.slow  # real-time waits or an injected fault
async def test_a_csv_with_start_at_schedules_its_rooms_and_a_rerun_schedules_nothing_twice(
    stack: Stack, receiver: Receiver, redis: Redis, tmp_path: Path
) -> None:
    await stack.lk("config", "POST", {"webhook_urls": []})
    # Two days of a term, a week ahead, at 09:00 UTC; written in two notations.
    monday = (int(time.time()) // 86400 + 7) * 86400 + 9 * 3600
    tuesday = monday + 86400
    hook = receiver.at("/hook")
    rows = [
        ["mon-1", "Maths", hook, str(monday)],
        ["mon-2", "Physics", hook, _iso(monday, 2)],  # the same instant, at UTC+2
        ["mon-3", "Chemistry", hook, _iso(monday + 3600, -5)],
        ["tue-1", "Biology", hook, f"{tuesday}"],
        ["now-1", "Drop-in", hook, ""],
        ["bad-1", "No offset", hook, "2027-02-01T09:00:00"],
    ]
    header = ["room_id", "metadata.room_title", "metadata.webhook_url", "start_at"]
    rooms = write_csv(tmp_path / "term.csv", header, rows)

    code, out, err = await create_rooms(stack, str(rooms), "--dry-run")
    assert code == 1, (out, err)  # one bad line
    assert "line 7: start_at: '2027-02-01T09:00:00' needs a UTC offset" in err
    day = datetime.datetime.fromtimestamp(monday).astimezone().strftime("%Y-%m-%d %a")
    next_day = datetime.datetime.fromtimestamp(tuesday).astimezone().strftime("%Y-%m-%d %a")
    assert f"    {day}  3 rooms" in out.splitlines(), out
    assert f"    {next_day}  1 rooms" in out.splitlines(), out
    assert "    created at once (no start_at, or in the past)  1 rooms" in out.splitlines()
    assert await redis.zcard(keys.SCHEDULED_BY_START) == 0

    report = tmp_path / "report.csv"
    code, out, err = await create_rooms(stack, str(rooms), "--report", str(report))
    assert code == 1, (out, err)  # the bad line; every good one is a room or a schedule
    assert "term.csv: 6 rooms: 1 created, 0 already existed, 4 scheduled, 0 failed" in out, out
    first = {r["room_id"]: r for r in read_report(report)}
    assert {k: r["outcome"] for k, r in first.items()} == {
        "mon-1": "scheduled",
        "mon-2": "scheduled",
        "mon-3": "scheduled",
        "tue-1": "scheduled",
        "now-1": "created",
        "bad-1": "invalid",
    }
    assert first["mon-2"]["start_at"] == _iso(monday, 0)
    assert first["mon-3"]["start_at"] == _iso(monday + 3600, 0)
    assert first["now-1"]["start_at"] == ""
    assert await redis.zrangebylex(keys.SCHEDULED_BY_START, "-", "+") == [
        f"{monday:011d}|mon-1",
        f"{monday:011d}|mon-2",
        f"{monday + 3600:011d}|mon-3",
        f"{tuesday:011d}|tue-1",
    ]

    code, out, err = await create_rooms(stack, str(rooms), "--report", str(report))
    assert code == 1, (out, err)
    assert "6 rooms: 0 created, 1 already existed, 4 scheduled" in out, out
    again = {r["room_id"]: r for r in read_report(report)}
    planned = ["mon-1", "mon-2", "mon-3", "tue-1"]
    assert [again[k]["job_id"] for k in planned] == [first[k]["job_id"] for k in planned]
    assert again["now-1"]["outcome"] == "exists"
    assert await redis.zcard(keys.schedule_due(keys.SCHEDULED_ROOMS)) == 4
    await eventually(lambda: deliveries_drained(redis), what="webhook queues drained")
    scheduled = [e["room"]["room_id"] for e in receiver.events() if e["event"] == "room_scheduled"]
    assert sorted(scheduled) == planned
    assert [c["room"] for c in await livekit_calls(stack.emulator.url, "CreateRoom")] == ["now-1"]
