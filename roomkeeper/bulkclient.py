"""`create-rooms`' conversation with the API: submit in batches, follow the jobs, report.

Rooms go out through `createBulk` in batches of at most `--batch-size` rooms and `MAX_BODY` bytes
(packed in file order, so long metadata means smaller batches rather than a 413; split further if
the API still says too large, and retried while the service says its queue is full); their jobs
are then followed through `job/status` until every room is created or failed. Two progress bars
show rooms submitted and rooms ready. Re-running a file creates nothing twice: rooms already
there come back as `exists`, rooms already scheduled keep their one schedule. A room with a
`start_at` ahead is `scheduled` and counts as done (created at its time, after this command ends).

`--dry-run` sends the same batches with `"dry_run": true`: the API runs every check it would run
for real (its webhook address rules, rooms already there) and claims nothing. An API too old to
know `dry_run` is never sent one (it would create the rooms): the run then checks locally only,
and says so.

Before anything is sent the API is asked for `/openapi.json`: a wrong `--url` fails within seconds
("cannot reach the API at ..."). Ctrl-C (or SIGTERM) stops the run cleanly and still writes the
report of what happened so far.

Exit status, the same for a dry run and a real one: 0 when every line of the file is (or, dry,
would be) a room; 1 when a line is bad or refused, or a room failed or is still pending; 2 for a
file or configuration problem, or an API that cannot be reached; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from roomkeeper.api_client import (
    Api,
    ApiFailure,
    CliSettings,
    body_schema,
    bulk_limit,
    preflight,
    until_interrupted,
)
from roomkeeper.bulkfile import FileError, Line, read_rooms, unknown_columns
from roomkeeper.starts import iso_utc, per_day, start_at_of

# Every route takes 1 MiB by default (createBulk more: 8 KiB a room); staying under 1 MB works
# against any deployment that kept ROOMKEEPER_MAX_BODY_BYTES.
MAX_BODY = 1_000_000
POLL_S = 0.5
MAX_POLL_S = 5.0
MAX_ERRORS_SHOWN = 50
READY = ("created", "exists", "scheduled")
INTERRUPTED = 130


@dataclass
class Outcome:
    """What became of one line's room."""

    line: Line
    outcome: str = "not_submitted"
    job_id: str = ""
    sid: str = ""
    msg: str = ""


_ENVELOPE = len(b'{"rooms": []}')


def batches(outcomes: list[Outcome], most: int, max_bytes: int) -> list[list[Outcome]]:
    """Consecutive batches of at most `most` rooms whose createBulk body fits `max_bytes`.

    A room too large to share a call goes alone (the API then says whether it takes it).
    """
    out: list[list[Outcome]] = []
    batch: list[Outcome] = []
    size = _ENVELOPE
    for o in outcomes:
        room = len(json.dumps(o.line.request).encode()) + 2  # ", " between rooms
        if batch and (len(batch) >= most or size + room > max_bytes):
            out.append(batch)
            batch, size = [], _ENVELOPE
        batch.append(o)
        size += room
    if batch:
        out.append(batch)
    return out


class Runner:
    """Submits, follows and reports one file's rooms."""

    def __init__(self, api: Api, outcomes: list[Outcome], args: argparse.Namespace) -> None:
        self.api = api
        self.outcomes = outcomes
        self.args = args
        self.deadline = time.monotonic() + args.timeout
        self.console = Console(stderr=True, soft_wrap=True)
        self.progress = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.sent: TaskID = self.progress.add_task("submitted", total=len(outcomes), note="")
        self.ready: TaskID = self.progress.add_task("ready", total=len(outcomes), note="")
        self.submitting = True
        self.per_poll = 1000  # job ids per job/status call, lowered if the server says so

    async def run(self) -> None:
        """Submit every room; meanwhile and afterwards follow their jobs (unless --no-wait)."""
        with self.progress:
            wait = not (self.args.no_wait or self.args.dry_run)
            follower = asyncio.create_task(self.follow()) if wait else None
            try:
                try:
                    await self.submit()
                finally:
                    self.submitting = False
                if follower is not None:
                    await follower
            finally:
                if follower is not None and not follower.done():
                    follower.cancel()  # interrupted: stop polling too
                    with contextlib.suppress(asyncio.CancelledError):
                        await follower

    async def submit(self) -> None:
        start = 0
        for batch in batches(self.outcomes, self.args.batch_size, MAX_BODY):
            try:
                await self.submit_batch(batch)
            except ApiFailure as exc:
                self.console.print(f"[red]the API refused the rooms: {exc}[/red]")
                for o in self.outcomes[start:]:
                    if o.outcome == "not_submitted":
                        o.msg = str(exc)
                return
            start += len(batch)

    async def submit_batch(self, batch: list[Outcome]) -> None:
        """One createBulk call (split in two while the body is too large for the API)."""
        call: dict[str, Any] = {"rooms": [o.line.request for o in batch]}
        if self.args.dry_run:
            call["dry_run"] = True
        body = json.dumps(call).encode()
        if len(body) > MAX_BODY and len(batch) > 1:
            half = len(batch) // 2
            await self.submit_batch(batch[:half])
            await self.submit_batch(batch[half:])
            return
        delay = 1.0
        while True:
            try:
                status, answer = await self.api.post("/auth/room/createBulk", body)
            except (aiohttp.ClientError, OSError) as exc:
                status, answer = 0, {"msg": f"API unreachable ({type(exc).__name__})"}
            limit = bulk_limit(answer)
            if (status == 413 or limit) and len(batch) > 1:
                # Too large for this deployment: send it in pieces it takes.
                size = min(limit or len(batch) // 2, len(batch) // 2 or 1)
                for i in range(0, len(batch), size):
                    await self.submit_batch(batch[i : i + size])
                return
            if status in (200, 202) and answer.get("status") is True:
                self.record(batch, answer.get("results") or [])
                return
            msg = str(answer.get("msg") or f"HTTP {status}")
            retryable = status == 0 or msg.startswith("queue is full")
            if not retryable or time.monotonic() + delay > self.deadline:
                raise ApiFailure(msg)
            self.progress.update(self.sent, note=f"waiting: {msg}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def record(self, batch: list[Outcome], results: list[dict[str, Any]]) -> None:
        for o, result in zip(batch, results, strict=False):
            if result.get("accepted") and self.args.dry_run:
                o.outcome, o.msg = "valid", str(result.get("msg", ""))
            elif result.get("accepted"):
                o.outcome, o.job_id = "queued", str(result.get("job_id", ""))
                o.msg = str(result.get("msg", ""))
                if o.msg == "scheduled":
                    o.outcome, o.msg = "scheduled", ""
            elif "room_info" in result:
                o.outcome, o.msg = "exists", str(result.get("msg", ""))
                o.sid = str((result.get("room_info") or {}).get("sid", ""))
            else:
                o.outcome, o.msg = "rejected", str(result.get("msg", ""))
                self.console.print(f"line {o.line.line}: {o.msg}")
        self.progress.update(self.sent, advance=len(batch), note="")
        self.progress.update(self.ready, completed=self.count(*READY, "valid"))

    def count(self, *outcomes: str) -> int:
        return sum(o.outcome in outcomes for o in self.outcomes)

    async def follow(self) -> None:
        """Poll job/status for pending rooms until each is created or failed (or time is up)."""
        interval, settled = POLL_S, -1
        while True:
            pending = [o for o in self.outcomes if o.outcome == "queued"]
            for i in range(0, len(pending), self.per_poll):
                await self.poll(pending[i : i + self.per_poll])
            failed = self.count("failed")
            self.progress.update(
                self.ready,
                completed=self.count(*READY),
                note=f"[red]{failed} failed[/red]" if failed else "",
            )
            if not self.submitting and not any(o.outcome == "queued" for o in self.outcomes):
                return
            if time.monotonic() > self.deadline:
                return
            # Slow down while nothing moves (a long LiveKit outage), speed up again when it does.
            now_settled = self.count(*READY, "failed")
            interval = POLL_S if now_settled != settled else min(interval * 2, MAX_POLL_S)
            settled = now_settled
            await asyncio.sleep(interval)

    async def poll(self, chunk: list[Outcome]) -> None:
        body = json.dumps({"job_ids": [o.job_id for o in chunk]}).encode()
        try:
            status, answer = await self.api.post("/auth/job/status", body)
        except (aiohttp.ClientError, OSError):
            return  # the next round asks again
        if status != 200 or answer.get("status") is not True:
            self.per_poll = min(self.per_poll, bulk_limit(answer) or self.per_poll)
            return
        for o, job in zip(chunk, answer.get("jobs") or [], strict=False):
            state = job.get("state")
            if state == "complete":
                o.outcome, o.msg = "created", ""
                o.sid = str((job.get("room_info") or {}).get("sid", ""))
            elif state in ("failed", "not_found"):
                o.outcome, o.msg = "failed", str(job.get("msg", ""))
                self.console.print(f"line {o.line.line}: room {o.line.room_id}: {o.msg}")


def write_report(path: Path, outcomes: list[Outcome]) -> None:
    """One CSV row per line of the file: room_id, line, outcome, start_at, job_id, sid, msg."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["room_id", "line", "outcome", "start_at", "job_id", "sid", "msg"])
        for o in sorted(outcomes, key=lambda o: o.line.line):
            start = iso_utc(start_at_of(o.line))
            writer.writerow([o.line.room_id, o.line.line, o.outcome, start, o.job_id, o.sid, o.msg])


def _show_bad_lines(console: Console, bad: list[Line]) -> None:
    for line in bad[:MAX_ERRORS_SHOWN]:
        console.print(f"line {line.line}: {line.error}", markup=False, highlight=False)
    if len(bad) > MAX_ERRORS_SHOWN:
        console.print(f"... and {len(bad) - MAX_ERRORS_SHOWN} more bad lines (see --report)")


def _summary(name: str, outcomes: list[Outcome], bad: int) -> str:
    counts = Counter(o.outcome for o in outcomes)
    total = len(outcomes) + bad
    parts = [
        f"{counts['created']} created",
        f"{counts['exists']} already existed",
        f"{counts['failed'] + counts['rejected']} failed",
        f"{counts['queued']} not created yet",
    ]
    if counts["scheduled"]:
        parts.insert(2, f"{counts['scheduled']} scheduled")
    if counts["not_submitted"]:
        parts.append(f"{counts['not_submitted']} not submitted")
    parts.append(f"{bad} bad lines")
    return f"{name}: {total} rooms: " + ", ".join(parts)


def _dry_summary(name: str, outcomes: list[Outcome], bad: int, checked_by: str) -> str:
    counts = Counter(o.outcome for o in outcomes)
    parts = [f"{counts['valid']} rooms valid"]
    if counts["exists"]:
        parts.append(f"{counts['exists']} already exist")
    if counts["not_submitted"]:
        parts.append(f"{counts['not_submitted']} not checked")
    parts.append(f"{bad + counts['rejected']} bad lines")
    return f"{name}: dry run{checked_by}: " + ", ".join(parts) + "; nothing created"


async def run(lines: list[Line], args: argparse.Namespace) -> int:
    """Submit the good lines and report; the exit status (see the module docstring)."""
    console = Console(stderr=True, soft_wrap=True)
    bad = [line for line in lines if line.request is None]
    good = [line for line in lines if line.request is not None]
    _show_bad_lines(console, bad)
    invalid = [Outcome(line, "invalid", msg=line.error or "") for line in bad]
    name = Path(args.file).name
    if not 1 <= args.batch_size <= 1000:
        console.print("--batch-size must be between 1 and 1000")
        return 2
    settings = CliSettings()
    secret = settings.api_secret.get_secret_value()
    if not settings.api_key or not secret:
        console.print("ROOMKEEPER_API_KEY and ROOMKEEPER_API_SECRET must be set (env or .env)")
        return 2
    outcomes = [Outcome(line) for line in good]
    url = args.url or settings.base_url()
    checked_by = ""
    interrupted = False
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        spec = await preflight(session, url)
        if isinstance(spec, str):
            console.print(spec, markup=False, highlight=False)
            return 2
        if args.dry_run and "dry_run" not in body_schema(spec, "/auth/room/createBulk").get(
            "properties", {}
        ):
            # An API without dry_run would create the rooms: check locally only.
            console.print(f"note: the API at {url} has no dry run; checked locally only")
            checked_by = " (checked locally only)"
            for o in outcomes:
                o.outcome = "valid"
        elif good:
            api = Api(session, url, settings.api_key, secret)
            interrupted = await until_interrupted(Runner(api, outcomes, args).run())
    if args.report:
        write_report(Path(args.report), outcomes + invalid)
    if args.dry_run:
        print(_dry_summary(name, outcomes, len(bad), checked_by), flush=True)
        for row in per_day(good, time.time()):
            print(row)
    else:
        print(_summary(name, outcomes, len(bad)), flush=True)
    if interrupted:
        console.print("interrupted: the report holds what happened so far")
        return INTERRUPTED
    wanted: tuple[str, ...] = (*READY, "queued") if args.no_wait else READY
    if args.dry_run:
        wanted = ("exists", "valid")
    ok = all(o.outcome in wanted for o in outcomes) and not bad
    return 0 if ok else 1


async def main(args: argparse.Namespace) -> int:
    """Read, check, submit and (unless --no-wait) follow the rooms of `args.file`."""
    path = Path(args.file)
    try:
        lines = read_rooms(path)
    except FileError as exc:
        print(f"roomkeeper create-rooms: {exc}", file=sys.stderr)
        return 2
    for column in unknown_columns(path):
        # Newer plugNmeet fields pass through; a typo would too, so say so once.
        print(
            f"note: column {column} is not a field roomkeeper knows; sent as text", file=sys.stderr
        )
    return await run(lines, args)
