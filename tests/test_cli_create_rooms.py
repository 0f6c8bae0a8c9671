"""`roomkeeper create-rooms FILE`, run as a real subprocess against the running stack."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from redis.asyncio import Redis

from emulator.server import Emulator
from roomkeeper.bulkfile import read_csv
from tests.support.api import API_KEY, API_SECRET, eventually, livekit_calls, livekit_rooms
from tests.support.servers import ROOT, Receiver, RedisServer, free_port
from tests.support.stack import Stack, make_settings, run_stack
from tests.test_bulk import CreatedEvents
from worker import keys
from worker.settings import Settings

pytestmark = pytest.mark.slow  # real processes or injected faults


@pytest.fixture
def settings(redis_server: RedisServer, emulator: Emulator) -> Settings:
    """The default test settings with a LiveKit timeout a loaded machine cannot run out.

    The emulator shares this process's event loop with the API and the worker: with 2,000
    rooms in flight on a busy machine a 2 s call timeout ran out, and the retried get-or-create
    reached LiveKit twice, which the test counts.
    """
    return make_settings(redis_server.url, emulator.url, livekit_timeout=15.0)


async def create_rooms(
    stack: Stack | None, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run the command; (exit status, stdout, stderr)."""
    base = {"ROOMKEEPER_API_KEY": API_KEY, "ROOMKEEPER_API_SECRET": API_SECRET}
    url = ["--url", stack.url] if stack is not None else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "roomkeeper",
        "create-rooms",
        *args,
        *url,
        cwd=ROOT,
        env={**os.environ, **base, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 100)
    except TimeoutError:
        proc.kill()  # never leave it running (or its pipes open) behind a failed test
        await proc.communicate()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def read_report(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


async def deliveries_drained(redis: Redis) -> bool:
    return await redis.zcard(keys.schedule_due(keys.DELIVERY_QUEUES)) == 0


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


async def test_two_thousand_rooms_from_a_csv_are_created_once_and_a_rerun_creates_nothing(
    stack: Stack, receiver: Receiver, redis: Redis, tmp_path: Path
) -> None:
    # LiveKit's own webhooks (room_started, forwarded to the hook too) are another issue's
    # guarantee; without them this test watches only what bulk creation sends.
    await stack.lk("config", "POST", {"webhook_urls": []})
    names = [f"term-{i:04d}" for i in range(2000)]
    rooms = write_csv(
        tmp_path / "rooms.csv",
        [
            "room_id",
            "metadata.room_title",
            "metadata.webhook_url",
            "max_participants",
            "metadata.room_features.allow_webcams",
            "metadata.room_features.room_duration",
        ],
        [
            [n, f"Class {i}", receiver.at("/hook"), i % 50, "no" if i % 2 else "yes", i % 90]
            for i, n in enumerate(names)
        ],
    )
    report = tmp_path / "report.csv"

    code, out, err = await create_rooms(stack, str(rooms), "--report", str(report))

    assert code == 0, (out, err)
    assert out.strip().endswith(
        "rooms.csv: 2000 rooms: 2000 created, 0 already existed, 0 failed, 0 not created yet, "
        "0 bad lines"
    )
    assert len(err.splitlines()) < 10, err  # without a terminal, progress does not spam
    rows = read_report(report)
    assert [r["room_id"] for r in rows] == names
    assert {r["outcome"] for r in rows} == {"created"}
    assert [r["line"] for r in rows] == [str(i + 2) for i in range(2000)]
    in_livekit = await livekit_rooms(stack.emulator.url)
    assert set(in_livekit) == set(names)
    assert {r["room_id"]: r["sid"] for r in rows} == {n: in_livekit[n]["sid"] for n in names}
    calls = await livekit_calls(stack.emulator.url, "CreateRoom")
    assert Counter(c["room"] for c in calls) == dict.fromkeys(names, 1)
    # Typed cells: integers and yes/no switches reached LiveKit as such.
    odd = in_livekit["term-0007"]
    assert odd["max_participants"] == 7
    features = json.loads(odd["metadata"])["room_features"]
    assert features["allow_webcams"] is False and features["room_duration"] == 7
    events = CreatedEvents(receiver)
    assert await events.wait(2000, timeout=60) == dict.fromkeys(names, 1)

    code, out, err = await create_rooms(stack, str(rooms), "--report", str(report))

    assert code == 0, (out, err)
    assert "2000 rooms: 0 created, 2000 already existed" in out
    assert {r["outcome"] for r in read_report(report)} == {"exists"}
    assert len(await livekit_calls(stack.emulator.url, "CreateRoom")) == 2000
    await eventually(lambda: deliveries_drained(redis), what="webhook queues drained")
    assert events.count() == dict.fromkeys(names, 1)


async def test_dry_run_reports_every_bad_line_and_creates_nothing(
    stack: Stack, redis: Redis, tmp_path: Path
) -> None:
    rooms = write_csv(
        tmp_path / "rooms.csv",
        [
            "room_id",
            "metadata.room_title",
            "max_participants",
            "metadata.room_features.allow_polls",
        ],
        [
            ["dry-1", "Fine", "10", "true"],
            ["dry-2", "Bad count", "ten", ""],
            ["dry-3", "", "", ""],
            ["dry-4", "Bad switch", "", "maybe"],
            ["dry-1", "Again", "", ""],
            ["dry-5", "Too", "many", "cells", "here"],
            ["dry-6", "Too few"],
            ["bad id", "Title", "", ""],
        ],
    )
    report = tmp_path / "report.csv"

    code, out, err = await create_rooms(stack, str(rooms), "--dry-run", "--report", str(report))

    assert code == 1
    assert out.strip() == "rooms.csv: dry run: 1 rooms valid, 7 bad lines; nothing created"
    assert [line for line in err.splitlines() if line.startswith("line ")] == [
        "line 3: max_participants: 'ten' is not an integer",
        "line 4: metadata.room_title: is required",
        "line 5: metadata.room_features.allow_polls: 'maybe' is not a boolean "
        "(true/false/1/0/yes/no)",
        "line 6: room_id dry-1 is already used on line 2",
        "line 7: has 5 cells, the header names 4",
        "line 8: has 2 cells, the header names 4",  # a short row is refused like a long one
        "line 9: room_id: must be 1-256 characters of A-Z a-z 0-9 _ . : -",
    ]
    assert [(r["line"], r["outcome"]) for r in read_report(report)] == [
        ("2", "valid"),
        *((str(n), "invalid") for n in range(3, 10)),
    ]
    assert await livekit_calls(stack.emulator.url, "CreateRoom") == []
    assert await redis.keys(keys.room("*")) == []


async def test_jsonl_bad_lines_are_reported_by_number_and_the_rest_created(
    stack: Stack, tmp_path: Path
) -> None:
    lines = [
        json.dumps({"room_id": "jl-1", "metadata": {"room_title": "One", "room_features": {}}}),
        '{"room_id": "jl-broken", ',
        "",
        "[1, 2]",
        json.dumps({"room_id": "jl-2", "metadata": {"room_title": " ", "room_features": {}}}),
        json.dumps({"room_id": "jl-3", "metadata": {"room_title": "Three", "room_features": {}}}),
    ]
    rooms = tmp_path / "rooms.jsonl"
    rooms.write_text("\n".join(lines) + "\n")
    report = tmp_path / "report.csv"

    code, out, err = await create_rooms(stack, str(rooms), "--report", str(report))

    assert code == 1, (out, err)  # every valid room exists, but a bad line fails the run
    assert "5 rooms: 2 created, 0 already existed, 0 failed, 0 not created yet, 3 bad lines" in out
    assert "line 2: invalid JSON: Expecting property name enclosed in double quotes" in err
    assert "line 4: must be a JSON object (one request per line)" in err
    assert "line 5: metadata.room_title: must not be empty" in err
    outcomes = {r["line"]: (r["room_id"], r["outcome"]) for r in read_report(report)}
    assert outcomes == {
        "1": ("jl-1", "created"),
        "2": ("", "invalid"),
        "4": ("", "invalid"),
        "5": ("jl-2", "invalid"),
        "6": ("jl-3", "created"),
    }
    assert set(await livekit_rooms(stack.emulator.url)) == {"jl-1", "jl-3"}


async def test_no_wait_reports_each_room_queued_with_its_job(stack: Stack, tmp_path: Path) -> None:
    rooms = write_csv(
        tmp_path / "r.csv", ["room_id", "metadata.room_title"], [["nw-1", "A"], ["nw-2", "B"]]
    )
    report = tmp_path / "report.csv"

    code, out, _ = await create_rooms(stack, str(rooms), "--no-wait", "--report", str(report))

    assert code == 0
    assert "2 rooms: 0 created, 0 already existed, 0 failed, 2 not created yet" in out
    rows = read_report(report)
    assert [(r["room_id"], r["outcome"]) for r in rows] == [("nw-1", "queued"), ("nw-2", "queued")]
    assert all(len(r["job_id"]) == 32 for r in rows)


async def test_batches_shrink_to_what_the_deployment_accepts_per_call(
    redis_server: RedisServer, emulator: Emulator, redis: Redis, tmp_path: Path
) -> None:
    rows = [[f"small-{i}", f"Room {i}"] for i in range(7)]
    rooms = write_csv(tmp_path / "r.csv", ["room_id", "metadata.room_title"], rows)
    settings = make_settings(redis_server.url, emulator.url, bulk_max_rooms=3)
    async with run_stack(settings, emulator) as stack:
        # 500 rooms per call by default, and 1000 job ids per status call: both too many here.
        code, out, err = await create_rooms(stack, str(rooms), "--timeout", "30")

    assert code == 0, (out, err)
    assert "7 rooms: 7 created" in out
    assert set(await livekit_rooms(emulator.url)) == {f"small-{i}" for i in range(7)}


async def test_a_refused_signature_stops_the_run_and_says_why(stack: Stack, tmp_path: Path) -> None:
    rooms = write_csv(tmp_path / "r.csv", ["room_id", "metadata.room_title"], [["sig-1", "A"]])
    wrong = {"ROOMKEEPER_API_SECRET": "not-the-secret-but-long-enough-for-a-key"}

    code, out, err = await create_rooms(stack, str(rooms), env=wrong)

    assert code == 1
    assert "the API refused the rooms: Failed to verify provided authentication details." in err
    assert (
        "1 rooms: 0 created, 0 already existed, 0 failed, 0 not created yet, 1 not submitted" in out
    )
    assert "not-the-secret" not in out + err
    assert await livekit_calls(stack.emulator.url, "CreateRoom") == []


async def test_without_api_credentials_the_command_says_which_variables_to_set(
    tmp_path: Path,
) -> None:
    rooms = write_csv(tmp_path / "r.csv", ["room_id", "metadata.room_title"], [["a", "A"]])
    env = {"ROOMKEEPER_API_KEY": "", "ROOMKEEPER_API_SECRET": ""}

    code, _, err = await create_rooms(None, str(rooms), env=env)

    assert code == 2
    assert "ROOMKEEPER_API_KEY and ROOMKEEPER_API_SECRET must be set" in err


def test_csv_cells_are_typed_by_the_field_they_fill() -> None:
    text = (
        "room_id,empty_timeout,metadata.room_title,metadata.room_features.chat_features.is_allow,"
        "metadata.room_features.breakout_room_features.allowed_number_rooms,metadata.extra_data\n"
        "t-1,600,007,No,3,00123\n"
        "t-2,,Title,,,\n"
    )

    first, second = read_csv(text)

    assert first.request == {
        "room_id": "t-1",
        "empty_timeout": 600,
        "metadata": {
            "room_title": "007",  # a text field keeps its digits as text
            "room_features": {
                "chat_features": {"is_allow": False},  # a newer alias is a switch too
                "breakout_room_features": {"allowed_number_rooms": 3},
            },
            "extra_data": "00123",  # unknown fields are text
        },
    }
    assert second.request == {
        "room_id": "t-2",
        "metadata": {"room_title": "Title", "room_features": {}},  # empty cells are absent
    }


async def test_a_closed_port_fails_within_seconds_saying_the_api_cannot_be_reached(
    tmp_path: Path,
) -> None:
    rooms = write_csv(tmp_path / "r.csv", ["room_id", "metadata.room_title"], [["cl-1", "A"]])
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()

    code, _, err = await create_rooms(None, str(rooms), "--url", url)

    assert time.monotonic() - started < 10
    assert code == 2
    assert f"cannot reach the API at {url}" in err and "Traceback" not in err


async def test_csv_and_jsonl_both_fill_an_absent_room_features(
    stack: Stack, tmp_path: Path
) -> None:
    rooms = tmp_path / "rooms.jsonl"
    rooms.write_text(json.dumps({"room_id": "nf-1", "metadata": {"room_title": "One"}}) + "\n")
    csv_rooms = write_csv(tmp_path / "r.csv", ["room_id", "metadata.room_title"], [["nf-2", "B"]])

    jsonl = await create_rooms(stack, str(rooms))
    csv_run = await create_rooms(stack, str(csv_rooms))

    assert (jsonl[0], csv_run[0]) == (0, 0), (jsonl, csv_run)
    assert set(await livekit_rooms(stack.emulator.url)) == {"nf-1", "nf-2"}


async def test_ctrl_c_stops_cleanly_and_writes_the_report_so_far(
    redis_server: RedisServer, emulator: Emulator, redis: Redis, tmp_path: Path
) -> None:
    # LiveKit refuses every create for now and the worker retries slowly: the rooms stay queued
    # and the command keeps waiting for them.
    settings = make_settings(redis_server.url, emulator.url, create_retry_schedule="2,2,2,2,2")
    async with run_stack(settings, emulator) as stack:
        await _interrupted_run(stack, redis, tmp_path)


async def _interrupted_run(stack: Stack, redis: Redis, tmp_path: Path) -> None:
    fault = {"method": "CreateRoom", "count": -1, "code": "unavailable"}
    await stack.lk("faults", "POST", fault)
    names = [f"int-{i}" for i in range(30)]
    rooms = write_csv(
        tmp_path / "r.csv", ["room_id", "metadata.room_title"], [[n, n] for n in names]
    )
    report = tmp_path / "report.csv"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "roomkeeper", "create-rooms", str(rooms), "--url", stack.url,
        "--report", str(report), "--batch-size", "10",
        cwd=ROOT, env={**os.environ, "ROOMKEEPER_API_KEY": API_KEY,
                       "ROOMKEEPER_API_SECRET": API_SECRET},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await eventually(
            lambda: _all_claimed(redis, names), timeout=30, what="every room submitted"
        )
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()

    assert proc.returncode == 130, (out, err)
    assert b"Traceback" not in err and b"interrupted" in err
    rows = read_report(report)
    assert [r["room_id"] for r in rows] == names
    assert {r["outcome"] for r in rows} == {"queued"}
    assert all(r["job_id"] for r in rows)
    # Let LiveKit take the creates, so the stack stops with no create in the middle of a retry.
    await stack.lk("faults", "DELETE")
    await eventually(
        lambda: _all_in_livekit(stack, names), timeout=30, what="the rooms created after all"
    )


async def _all_in_livekit(stack: Stack, names: list[str]) -> bool:
    return set(names) <= set(await livekit_rooms(stack.emulator.url))


async def _all_claimed(redis: Redis, names: list[str]) -> bool:
    return all(await asyncio.gather(*(redis.exists(keys.room(n)) for n in names)))


async def test_dry_run_refuses_what_the_server_refuses_and_exits_as_the_real_run(
    stack: Stack, redis: Redis, tmp_path: Path
) -> None:
    # A private address passes the local checks (they cannot know the deployment's allow-list);
    # only the server refuses it.
    rooms = write_csv(
        tmp_path / "rooms.csv",
        ["room_id", "metadata.room_title", "metadata.webhook_url"],
        [["ok-1", "Fine", ""], ["private-1", "Internal hook", "http://10.1.2.3/hook"]],
    )
    report = tmp_path / "report.csv"

    dry = await create_rooms(stack, str(rooms), "--dry-run", "--report", str(report))

    assert dry[0] == 1, dry
    assert dry[1].strip() == "rooms.csv: dry run: 1 rooms valid, 1 bad lines; nothing created"
    assert "line 3: metadata.webhook_url: refused:" in dry[2] and "10.1.2.3" in dry[2]
    assert [(r["room_id"], r["outcome"]) for r in read_report(report)] == [
        ("ok-1", "valid"),
        ("private-1", "rejected"),
    ]
    assert await redis.keys(keys.room("*")) == []  # nothing claimed
    assert await livekit_calls(stack.emulator.url, "CreateRoom") == []

    real = await create_rooms(stack, str(rooms))

    assert real[0] == dry[0]  # the same file exits the same way
    assert "line 3: metadata.webhook_url: refused:" in real[2]
    assert set(await livekit_rooms(stack.emulator.url)) == {"ok-1"}


async def test_dry_run_never_sends_to_an_api_without_dry_run(tmp_path: Path) -> None:
    # An older roomkeeper ignores unknown keys: a dry_run sent to it would create the rooms.
    calls: list[str] = []

    async def spec(request: web.Request) -> web.Response:
        return web.json_response({"openapi": "3.1.0", "paths": {}})

    async def anything(request: web.Request) -> web.Response:
        calls.append(request.path)
        return web.json_response({"status": False, "msg": "unexpected"})

    app = web.Application()
    app.router.add_get("/openapi.json", spec)
    app.router.add_post("/{tail:.*}", anything)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    rooms = write_csv(tmp_path / "r.csv", ["room_id", "metadata.room_title"], [["old-1", "A"]])
    try:
        code, out, err = await create_rooms(
            None, str(rooms), "--dry-run", "--url", f"http://127.0.0.1:{port}"
        )
    finally:
        await runner.cleanup()

    assert calls == []
    assert code == 0, (out, err)
    assert "has no dry run; checked locally only" in err
    assert "dry run (checked locally only): 1 rooms valid, 0 bad lines" in out
