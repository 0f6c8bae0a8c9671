"""Each Lua script on a real Redis, branch by branch: one test group per `.lua` file.

The end-to-end tests show the scripts working together; these pin each script's own contract
(what it returns and writes in every branch), so a change to one script is checked on its own.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
from redis.asyncio import Redis

from worker import keys, lua
from worker.webhooks.delivery import body_fields
from worker.webhooks.stored import pack_body

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(ROOT.glob("worker/**/*.lua"))
# Every script must have its group here; each group's tests are named `test_<script>_...`.
TESTED = {
    "worker/rooms/claim_create.lua",
    "worker/rooms/transition.lua",
    "worker/rooms/begin_end.lua",
    "worker/rooms/finalize.lua",
    "worker/rooms/record_created.lua",
    "worker/rooms/start_create.lua",
    "worker/rooms/accept_event.lua",
    "worker/queue/claim.lua",
    "worker/queue/release.lua",
    "worker/queue/pop.lua",
    "worker/queue/pop_many.lua",
    "worker/reserve_slot.lua",
    "worker/webhooks/peek.lua",
    "worker/webhooks/settle.lua",
    "worker/webhooks/advance.lua",
    "worker/webhooks/prune.lua",
    "worker/webhooks/host_admit.lua",
    "worker/webhooks/host_admit_head.lua",
    "worker/webhooks/host_observe.lua",
}


def run(redis: Redis, package: str, name: str) -> Any:
    """The script as production code registers it (through the one loader)."""
    return lua.script(redis, package, name)


# -- every script: a file, documented, loaded, tested ----------------------------------------


def test_every_lua_script_has_its_tests() -> None:
    found = {str(p.relative_to(ROOT)) for p in SCRIPTS}
    assert found == TESTED
    names = {n for n in globals() if n.startswith("test_")}
    for path in found:
        stem = Path(path).stem
        assert any(n.startswith(f"test_{stem}_") for n in names), path


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_every_lua_script_documents_its_arguments(path: Path) -> None:
    """Each KEYS[n] / ARGV[n] a script reads is described in its header comment."""
    text = path.read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("--"))
    code = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    used = set(re.findall(r"\b(KEYS|ARGV)\[(\d+)\]", code))
    assert used, path
    for kind, n in used:
        assert re.search(rf"^-- {kind}\[{n}\] \w+", header, re.M), (path.name, kind, n)


def test_loader_reads_each_file_once() -> None:
    assert lua.source("worker.queue", "claim") is lua.source("worker.queue", "claim")
    assert lua.source("worker.queue", "claim") == (ROOT / "worker/queue/claim.lua").read_text()


@pytest.mark.slow
def test_every_lua_script_and_body_dictionary_ships_in_the_wheel(tmp_path: Path) -> None:
    """An installed roomkeeper (not only this checkout) has its scripts and the dictionary its
    stored bodies are packed with: they are package data."""
    # Built from a copy, so the build leaves nothing in the checkout.
    src = tmp_path / "src"
    for package in ("worker", "handlers", "emulator", "roomkeeper"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(src), "-w", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=110,
    )
    (wheel,) = tmp_path.glob("roomkeeper-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = {n for n in zf.namelist() if n.endswith((".lua", ".zdict"))}
    dictionaries = sorted(ROOT.glob("worker/**/*.zdict"))
    assert dictionaries
    assert shipped == {str(p.relative_to(ROOT)) for p in [*SCRIPTS, *dictionaries]}


# -- worker/rooms/claim_create.lua -------------------------------------------------------------


def claim_args(job_id: str, room_id: str = "r1") -> list[Any]:
    return [job_id, '{"room_id":"r1"}', "ev1", 1_000, room_id, 3600]


async def claim(redis: Redis, job_id: str) -> list[str]:
    script = run(redis, "worker.rooms", "claim_create")
    k = [keys.room("r1"), keys.job(job_id), keys.QUEUED_JOBS, "arq:job:batch", keys.QUEUE_NAME]
    a = [*claim_args(job_id), "payload", 60_000, 1_234, "batch"]
    result: list[str] = await script(keys=k, args=a)
    return result


async def test_claim_create_new_writes_room_job_queue_and_arq_job(redis: Redis) -> None:
    assert await claim(redis, "j1") == ["new", "j1"]
    assert await redis.hgetall(keys.room("r1")) == {"state": "queued", "job_id": "j1"}
    job = await redis.hgetall(keys.job("j1"))
    assert job == {
        "job_id": "j1",
        "room_id": "r1",
        "state": "queued",
        "request": '{"room_id":"r1"}',
        "event_id": "ev1",
        "attempts": "0",
        "created_ms": "1000",
    }
    assert 3590 < await redis.ttl(keys.job("j1")) <= 3600
    assert await redis.zscore(keys.QUEUED_JOBS, "j1") == 1000
    # The arq job that creates it, written by the same script.
    assert await redis.get("arq:job:batch") == "payload"
    assert 59_000 < await redis.pttl("arq:job:batch") <= 60_000
    assert await redis.zscore(keys.QUEUE_NAME, "batch") == 1234


async def test_claim_create_new_claims_of_one_group_write_its_arq_job_alike(redis: Redis) -> None:
    assert await claim(redis, "j1") == ["new", "j1"]
    await redis.hset(keys.room("r1"), "state", "ended")  # so the next claim is new too
    assert await claim(redis, "j2") == ["new", "j2"]
    assert await redis.get("arq:job:batch") == "payload"
    assert await redis.zrange(keys.QUEUE_NAME, 0, -1) == ["batch"]


@pytest.mark.parametrize("state", ["queued", "creating"])
async def test_claim_create_pending_returns_the_job_and_writes_nothing(
    redis: Redis, state: str
) -> None:
    await redis.hset(keys.room("r1"), mapping={"state": state, "job_id": "j0"})
    assert await claim(redis, "j1") == ["pending", "j0"]
    assert await redis.exists(keys.job("j1"), "arq:job:batch", keys.QUEUED_JOBS) == 0


@pytest.mark.parametrize("state", ["created", "active"])
async def test_claim_create_live_room_exists_with_its_info(redis: Redis, state: str) -> None:
    await redis.hset(keys.room("r1"), mapping={"state": state, "info": '{"sid":"RM_1"}'})
    assert await claim(redis, "j1") == ["exists", '{"sid":"RM_1"}']
    assert await redis.hget(keys.room("r1"), "state") == state
    assert await redis.exists(keys.job("j1"), "arq:job:batch") == 0


async def test_claim_create_ending_room_is_refused(redis: Redis) -> None:
    await redis.hset(keys.room("r1"), mapping={"state": "ending", "sid": "RM_1"})
    assert await claim(redis, "j1") == ["ending", ""]
    assert await redis.hget(keys.room("r1"), "state") == "ending"
    assert await redis.exists(keys.job("j1"), "arq:job:batch") == 0


@pytest.mark.parametrize("state", ["ended", "failed"])
async def test_claim_create_after_an_ended_session_starts_afresh(redis: Redis, state: str) -> None:
    await redis.hset(keys.room("r1"), mapping={"state": state, "sid": "RM_old", "joined": 3})
    assert await claim(redis, "j2") == ["new", "j2"]
    # The old session's fields are gone, not mixed into the new one.
    assert await redis.hgetall(keys.room("r1")) == {"state": "queued", "job_id": "j2"}


# -- worker/rooms/transition.lua ---------------------------------------------------------------


async def transition(redis: Redis, sid: str, to: str, reason: str, *from_states: str) -> Any:
    script = run(redis, "worker.rooms", "transition")
    return await script(keys=[keys.room("r1")], args=[sid, to, 99.5, reason, *from_states])


async def test_transition_moves_a_matching_session_and_returns_the_state_it_left(
    redis: Redis,
) -> None:
    await redis.hset(keys.room("r1"), mapping={"sid": "RM_1", "state": "active"})
    assert await transition(redis, "RM_1", "ending", "timer", "created", "active") == "active"
    room = await redis.hgetall(keys.room("r1"))
    assert room == {"sid": "RM_1", "state": "ending", "state_since": "99.5", "end_reason": "timer"}


async def test_transition_with_no_reason_keeps_the_one_recorded(redis: Redis) -> None:
    await redis.hset(
        keys.room("r1"), mapping={"sid": "RM_1", "state": "ending", "end_reason": "timer"}
    )
    assert await transition(redis, "RM_1", "ended", "", "ending") == "ending"
    assert await redis.hget(keys.room("r1"), "end_reason") == "timer"
    assert await redis.hget(keys.room("r1"), "state") == "ended"


async def test_transition_of_another_session_changes_nothing(redis: Redis) -> None:
    await redis.hset(keys.room("r1"), mapping={"sid": "RM_2", "state": "active"})
    assert await transition(redis, "RM_1", "ending", "timer", "active") is None
    assert await redis.hgetall(keys.room("r1")) == {"sid": "RM_2", "state": "active"}


async def test_transition_from_a_state_not_listed_changes_nothing(redis: Redis) -> None:
    await redis.hset(keys.room("r1"), mapping={"sid": "RM_1", "state": "ended"})
    assert await transition(redis, "RM_1", "ending", "timer", "created", "active") is None
    assert await redis.hgetall(keys.room("r1")) == {"sid": "RM_1", "state": "ended"}


async def test_transition_of_an_unknown_room_changes_nothing(redis: Redis) -> None:
    assert await transition(redis, "RM_1", "ending", "timer", "active") is None
    assert await redis.exists(keys.room("r1")) == 0


# -- worker/rooms/begin_end.lua ----------------------------------------------------------------


async def begin_end(redis: Redis, sid: str, unjoined: str, *from_states: str) -> Any:
    script = run(redis, "worker.rooms", "begin_end")
    return await script(
        keys=[keys.room("r1")], args=[sid, 99.5, "empty_timeout", unjoined, *from_states]
    )


async def test_begin_end_moves_a_matching_session_to_ending_and_returns_it_as_it_was(
    redis: Redis,
) -> None:
    await redis.hset(keys.room("r1"), mapping={"sid": "RM_1", "state": "active", "joined": "0"})
    was = await begin_end(redis, "RM_1", "1", "created", "active")
    assert dict(zip(was[::2], was[1::2], strict=True)) == {
        "sid": "RM_1",
        "state": "active",
        "joined": "0",
    }
    assert await redis.hgetall(keys.room("r1")) == {
        "sid": "RM_1",
        "state": "ending",
        "joined": "0",
        "state_since": "99.5",
        "end_reason": "empty_timeout",
    }


async def test_begin_end_unjoined_leaves_a_joined_session(redis: Redis) -> None:
    await redis.hset(keys.room("r1"), mapping={"sid": "RM_1", "state": "active", "joined": "2"})
    assert await begin_end(redis, "RM_1", "1", "created", "active") is None
    assert await redis.hget(keys.room("r1"), "state") == "active"
    # Without the condition (a duration timer) a joined session ends all the same.
    assert await begin_end(redis, "RM_1", "", "created", "active")
    assert await redis.hget(keys.room("r1"), "state") == "ending"


async def test_begin_end_of_another_session_or_state_changes_nothing(redis: Redis) -> None:
    await redis.hset(keys.room("r1"), mapping={"sid": "RM_2", "state": "active"})
    assert await begin_end(redis, "RM_1", "1", "created", "active") is None
    await redis.hset(keys.room("r1"), mapping={"sid": "RM_1", "state": "ended"})
    assert await begin_end(redis, "RM_1", "1", "created", "active") is None
    assert await redis.hgetall(keys.room("r1")) == {"sid": "RM_1", "state": "ended"}
    await redis.delete(keys.room("r1"))
    assert await begin_end(redis, "RM_1", "1", "created", "active") is None
    assert await redis.exists(keys.room("r1")) == 0


# -- worker/rooms/finalize.lua -----------------------------------------------------------------

AS_READ = {"sid": "RM_1", "state": "ending", "end_reason": "empty_timeout"}
DUE, LEASES = keys.schedule_due("timers"), keys.schedule_leases("timers")


async def finalize(
    redis: Redis, read: dict[str, str], writes: list[list[str]], member: str = "", token: str = ""
) -> int:
    script = run(redis, "worker.rooms", "finalize")
    args: list[Any] = [len(read), *(x for pair in read.items() for x in pair), member, token]
    args.append(writes_block(*writes))
    return int(await script(keys=[keys.room("r1"), DUE, LEASES], args=args))


async def test_finalize_applies_the_writes_to_a_session_as_read_and_releases_the_timer(
    redis: Redis,
) -> None:
    await redis.hset(keys.room("r1"), mapping=AS_READ)
    await redis.zadd(DUE, {"empty|r1|RM_1|5": 5, "duration|r1|RM_1|9": 9})
    await redis.hset(LEASES, "empty|r1|RM_1|5", "t1")
    writes = [["HSET", keys.room("r1"), "state", "ended"], ["ZREM", DUE, "duration|r1|RM_1|9"]]
    assert await finalize(redis, AS_READ, writes, "empty|r1|RM_1|5", "t1") == 1
    assert await redis.hget(keys.room("r1"), "state") == "ended"
    assert await redis.zcard(DUE) == 0
    assert await redis.hlen(LEASES) == 0


@pytest.mark.parametrize(
    "now",
    [
        {**AS_READ, "state": "ended"},  # a value changed (LiveKit's room_finished came first)
        {**AS_READ, "joined": "1"},  # a field added
        {"sid": "RM_1", "state": "ending"},  # a field gone
        {},  # the session gone
    ],
)
async def test_finalize_of_a_session_no_longer_as_read_writes_nothing(
    redis: Redis, now: dict[str, str]
) -> None:
    if now:
        await redis.hset(keys.room("r1"), mapping=now)
    await redis.zadd(DUE, {"empty|r1|RM_1|5": 5})
    await redis.hset(LEASES, "empty|r1|RM_1|5", "t1")
    writes = [["HSET", keys.room("r1"), "state", "x"], ["SET", "other", "1"]]
    assert await finalize(redis, AS_READ, writes, "empty|r1|RM_1|5", "t1") == 0
    assert await redis.hgetall(keys.room("r1")) == now
    assert await redis.exists("other") == 0
    assert await redis.zscore(DUE, "empty|r1|RM_1|5") == 5
    assert await redis.hget(LEASES, "empty|r1|RM_1|5") == "t1"


async def test_finalize_leaves_a_lease_another_consumer_took_over(redis: Redis) -> None:
    await redis.hset(keys.room("r1"), mapping=AS_READ)
    await redis.zadd(DUE, {"empty|r1|RM_1|5": 7})
    await redis.hset(LEASES, "empty|r1|RM_1|5", "t2")
    assert await finalize(redis, AS_READ, [["SET", "done", "1"]], "empty|r1|RM_1|5", "t1") == 1
    assert await redis.get("done") == "1"
    assert await redis.hget(LEASES, "empty|r1|RM_1|5") == "t2"
    assert await redis.zscore(DUE, "empty|r1|RM_1|5") == 7
    # Without a timer (no member) only the writes are applied.
    await redis.hset(keys.room("r1"), "state", "ending")
    assert await finalize(redis, AS_READ, [["SET", "done", "2"]]) == 1
    assert await redis.get("done") == "2"


# -- worker/rooms/record_created.lua -----------------------------------------------------------


def writes_block(*commands: list[str]) -> bytes:
    """A block of writes as `worker.staged.block` spells it."""
    return msgpack.packb(
        [[w.encode() for w in command] for command in commands], use_bin_type=False
    )


async def record_created(redis: Redis, rooms: list[tuple[str, str]]) -> list[int]:
    """Each (room, job) with a created block (SET created:<room>, INCR created); the wake block
    SETs `woken`."""
    script = run(redis, "worker.rooms", "record_created")
    args: list[Any] = [len(rooms)]
    for room, job in rooms:
        args += [job, writes_block(["SET", f"created:{room}", job], ["INCR", "created"])]
    args.append(writes_block(["SET", "woken", "1"]))
    return list(await script(keys=[keys.room(r) for r, _ in rooms], args=args))


async def test_record_created_applies_each_rooms_block_by_its_session(redis: Redis) -> None:
    await redis.hset(keys.room("a"), mapping={"state": "creating", "job_id": "ja"})
    await redis.hset(keys.room("b"), mapping={"state": "queued", "job_id": "jb"})
    await redis.hset(keys.room("c"), mapping={"state": "created", "job_id": "jc"})  # done before
    await redis.hset(keys.room("d"), mapping={"state": "creating", "job_id": "newer"})
    rooms = [("a", "ja"), ("b", "jb"), ("c", "jc"), ("d", "jd"), ("e", "je")]  # e: no session
    assert await record_created(redis, rooms) == [3, 4, 5]  # the caller completes those jobs
    assert await redis.get("created:a") == "ja"
    assert await redis.get("created:b") == "jb"
    assert await redis.get("created") == "2"
    for room in "cde":
        assert await redis.exists(f"created:{room}") == 0
    assert await redis.get("woken") == "1"


async def test_record_created_wakes_nobody_when_no_room_was_created(redis: Redis) -> None:
    await redis.hset(keys.room("a"), mapping={"state": "active", "job_id": "ja"})
    assert await record_created(redis, [("a", "ja")]) == [1]
    assert await redis.exists("created:a", "created", "woken") == 0


# -- worker/rooms/start_create.lua -------------------------------------------------------------


async def start(redis: Redis, job_id: str = "j1") -> int:
    script = run(redis, "worker.rooms", "start_create")
    result = await script(keys=[keys.job(job_id), keys.room("r1")], args=[job_id])
    return int(result)


async def test_start_create_marks_job_in_progress_and_room_creating_and_keeps_it_open(
    redis: Redis,
) -> None:
    await redis.hset(keys.job("j1"), "state", "queued")
    await redis.hset(keys.room("r1"), mapping={"state": "queued", "job_id": "j1"})
    await redis.zadd(keys.QUEUED_JOBS, {"j1": 1, "j2": 2})
    assert await start(redis) == 1
    assert await redis.hget(keys.job("j1"), "state") == "in_progress"
    assert await redis.hget(keys.room("r1"), "state") == "creating"
    # Open until it ends: reconciliation looks there for jobs whose arq job was lost.
    assert await redis.zrange(keys.QUEUED_JOBS, 0, -1) == ["j1", "j2"]


async def test_start_create_rerun_of_a_job_in_progress_goes_on(redis: Redis) -> None:
    await redis.hset(keys.job("j1"), "state", "in_progress")
    await redis.hset(keys.room("r1"), mapping={"state": "creating", "job_id": "j1"})
    assert await start(redis) == 1
    assert await redis.hget(keys.room("r1"), "state") == "creating"


@pytest.mark.parametrize("room", [{"state": "queued", "job_id": "j0"}, {"state": "active"}])
async def test_start_create_leaves_a_room_that_is_not_this_jobs_queued_one(
    redis: Redis, room: dict[str, str]
) -> None:
    await redis.hset(keys.job("j1"), "state", "queued")
    await redis.hset(keys.room("r1"), mapping=room)
    assert await start(redis) == 1
    assert await redis.hgetall(keys.room("r1")) == room


@pytest.mark.parametrize("state", ["complete", "failed", None])
async def test_start_create_refuses_a_job_that_is_over_or_unknown(
    redis: Redis, state: str | None
) -> None:
    if state:
        await redis.hset(keys.job("j1"), "state", state)
    await redis.hset(keys.room("r1"), mapping={"state": "queued", "job_id": "j1"})
    await redis.zadd(keys.QUEUED_JOBS, {"j1": 1})
    assert await start(redis) == 0
    assert await redis.hget(keys.job("j1"), "state") == state
    assert await redis.hget(keys.room("r1"), "state") == "queued"
    assert await redis.zscore(keys.QUEUED_JOBS, "j1") == 1


# -- worker/rooms/accept_event.lua -------------------------------------------------------------


async def accept(redis: Redis, event_id: str, body: str, now: int = 500) -> int:
    script = run(redis, "worker.rooms", "accept_event")
    k = [keys.lk_event_seen(event_id), "t:due", "t:q:room1", "t:wake"]
    return int(await script(keys=k, args=[3600, body, now, "room1"]))


async def test_accept_event_files_a_new_event_and_wakes_consumers(redis: Redis) -> None:
    assert await accept(redis, "EV_1", "body1") == 1
    assert await redis.lrange("t:q:room1", 0, -1) == ["body1"]
    assert await redis.zscore("t:due", "room1") == 500
    assert await redis.lrange("t:wake", 0, -1) == ["1"]
    assert 3590 < await redis.ttl(keys.lk_event_seen("EV_1")) <= 3600


async def test_accept_event_twice_files_it_once(redis: Redis) -> None:
    assert await accept(redis, "EV_1", "body1") == 1
    assert await accept(redis, "EV_1", "body1") == 0
    assert await redis.lrange("t:q:room1", 0, -1) == ["body1"]
    assert await redis.llen("t:wake") == 1


async def test_accept_event_keeps_the_rooms_due_time_and_order(redis: Redis) -> None:
    await redis.zadd("t:due", {"room1": 9_999})  # leased by a consumer until then
    assert await accept(redis, "EV_1", "b1", now=500) == 1
    assert await accept(redis, "EV_2", "b2", now=600) == 1
    assert await redis.zscore("t:due", "room1") == 9_999
    assert await redis.lrange("t:q:room1", 0, -1) == ["b1", "b2"]


async def test_accept_event_wake_list_stays_bounded(redis: Redis) -> None:
    for i in range(70):
        await accept(redis, f"EV_{i}", "b")
    assert await redis.llen("t:wake") == 64


# -- worker/queue/claim.lua --------------------------------------------------------------------


async def claim_due(redis: Redis, now: int, limit: int = 10, lease: int = 1000) -> list[str]:
    script = run(redis, "worker.queue", "claim")
    result: list[str] = await script(keys=["s:due", "s:lease"], args=[now, limit, lease, "tok:"])
    return result


async def test_claim_takes_due_members_under_a_lease(redis: Redis) -> None:
    await redis.zadd("s:due", {"a": 100, "b": 200, "later": 5_000})
    assert await claim_due(redis, now=300) == ["a", "tok:1", "100", "b", "tok:2", "200"]
    assert await redis.zscore("s:due", "a") == 1300
    assert await redis.zscore("s:due", "b") == 1300
    assert await redis.zscore("s:due", "later") == 5000
    assert await redis.hgetall("s:lease") == {"a": "tok:1", "b": "tok:2"}


async def test_claim_nothing_due_returns_nothing(redis: Redis) -> None:
    await redis.zadd("s:due", {"later": 5_000})
    assert await claim_due(redis, now=300) == []
    assert await redis.exists("s:lease") == 0


async def test_claim_respects_the_limit_oldest_first(redis: Redis) -> None:
    await redis.zadd("s:due", {"a": 1, "b": 2, "c": 3})
    assert await claim_due(redis, now=10, limit=2) == ["a", "tok:1", "1", "b", "tok:2", "2"]
    assert await redis.zscore("s:due", "c") == 3


async def test_claim_leased_member_is_hidden_until_its_lease_ends(redis: Redis) -> None:
    await redis.zadd("s:due", {"a": 100})
    await claim_due(redis, now=100, lease=1000)
    assert await claim_due(redis, now=1099) == []
    # The holder died: due again, and the score it had is the lease's end.
    assert await claim_due(redis, now=1100) == ["a", "tok:1", "1100"]


async def test_claim_ahead_takes_members_due_by_then_with_their_due_times(redis: Redis) -> None:
    # A consumer claiming 1 s ahead (at_ms = now + 1000) learns when each member falls due.
    await redis.zadd("s:due", {"soon": 1_200, "later": 2_500})
    assert await claim_due(redis, now=2_000, lease=1000) == ["soon", "tok:1", "1200"]
    assert await redis.zscore("s:due", "soon") == 3000


async def test_claim_taking_everything_due_answers_the_wake_ups_pushed_before_it(
    redis: Redis,
) -> None:
    script = run(redis, "worker.queue", "claim")
    k = ["s:due", "s:lease", "s:wake"]
    await redis.zadd("s:due", {"a": 100, "b": 200, "later": 5_000})
    await redis.rpush("s:wake", 1, 1, 1)
    # Two due, room for three: both taken, so the wake-ups before the claim are answered.
    assert await script(keys=k, args=[300, 3, 1000, "t:"]) == ["a", "t:1", "100", "b", "t:2", "200"]
    assert await redis.exists("s:wake") == 0
    # Nothing due at all: answered too (the holder of a queue finds its new events itself).
    await redis.rpush("s:wake", 1)
    assert await script(keys=k, args=[400, 3, 1000, "t:"]) == []
    assert await redis.exists("s:wake") == 0


async def test_claim_leaving_members_due_keeps_the_wake_ups_for_other_consumers(
    redis: Redis,
) -> None:
    script = run(redis, "worker.queue", "claim")
    await redis.zadd("s:due", {"a": 1, "b": 2, "c": 3})
    await redis.rpush("s:wake", 1, 1)
    assert await script(keys=["s:due", "s:lease", "s:wake"], args=[10, 2, 1000, "t:"]) == [
        "a", "t:1", "1", "b", "t:2", "2",
    ]  # fmt: skip
    assert await redis.llen("s:wake") == 2
    # Without the wake list among its keys (timers claiming ahead) a claim never touches it.
    assert await claim_due(redis, now=10) == ["c", "tok:1", "3"]
    assert await redis.llen("s:wake") == 2


# -- worker/queue/release.lua ------------------------------------------------------------------


async def release(redis: Redis, token: str, next_ms: int | str = "") -> int:
    script = run(redis, "worker.queue", "release")
    k = ["s:due", "s:lease", "s:q:a", "s:wake"]
    return int(await script(keys=k, args=["a", token, next_ms, 777, 3]))


async def leased(redis: Redis) -> None:
    await redis.zadd("s:due", {"a": 5_000})
    await redis.hset("s:lease", "a", "tok")


async def test_release_to_a_given_time_reschedules_and_wakes(redis: Redis) -> None:
    await leased(redis)
    assert await release(redis, "tok", 2_000) == 1
    assert await redis.zscore("s:due", "a") == 2000
    assert await redis.hexists("s:lease", "a") == 0
    assert await redis.llen("s:wake") == 1


async def test_release_with_items_left_is_due_now(redis: Redis) -> None:
    await leased(redis)
    await redis.rpush("s:q:a", "item")
    assert await release(redis, "tok") == 1
    assert await redis.zscore("s:due", "a") == 777
    assert await redis.llen("s:wake") == 1


async def test_release_of_an_empty_list_unschedules_without_waking(redis: Redis) -> None:
    await leased(redis)
    assert await release(redis, "tok") == 1
    assert await redis.zscore("s:due", "a") is None
    assert await redis.hexists("s:lease", "a") == 0
    assert await redis.exists("s:wake") == 0


async def test_release_with_a_lost_lease_changes_nothing(redis: Redis) -> None:
    await leased(redis)
    assert await release(redis, "stale-token", 2_000) == 0
    assert await redis.zscore("s:due", "a") == 5000
    assert await redis.hget("s:lease", "a") == "tok"
    assert await redis.exists("s:wake") == 0


async def test_release_wake_list_keeps_wake_keep_entries(redis: Redis) -> None:
    for _ in range(5):
        await leased(redis)
        await release(redis, "tok", 2_000)
    assert await redis.llen("s:wake") == 3


# -- worker/queue/pop.lua ----------------------------------------------------------------------


async def pop(redis: Redis, token: str, head: str) -> int:
    script = run(redis, "worker.queue", "pop")
    k = ["s:due", "s:lease", "s:q:a"]
    return int(await script(keys=k, args=["a", token, head, 9_000]))


async def test_pop_drops_the_handled_head_and_renews_the_lease(redis: Redis) -> None:
    await leased(redis)
    await redis.rpush("s:q:a", "x", "y")
    assert await pop(redis, "tok", "x") == 1
    assert await redis.lrange("s:q:a", 0, -1) == ["y"]
    assert await redis.zscore("s:due", "a") == 9000


async def test_pop_of_a_head_already_gone_keeps_the_list(redis: Redis) -> None:
    await leased(redis)
    await redis.rpush("s:q:a", "y")
    assert await pop(redis, "tok", "x") == 1
    assert await redis.lrange("s:q:a", 0, -1) == ["y"]
    assert await redis.zscore("s:due", "a") == 9000


async def test_pop_with_next_also_returns_the_new_head(redis: Redis) -> None:
    script = run(redis, "worker.queue", "pop")
    k = ["s:due", "s:lease", "s:q:a"]
    await leased(redis)
    await redis.rpush("s:q:a", "x", "y")
    assert await script(keys=k, args=["a", "stale", "x", 9_000, "1"]) == -1
    assert await script(keys=k, args=["a", "tok", "x", 9_000, "1"]) == [1, "y"]
    assert await redis.zscore("s:due", "a") == 9000
    # The last item: the member is given back as release.lua gives back an empty one.
    assert await script(keys=k, args=["a", "tok", "y", 9_000, "1"]) == [0, None]
    assert await redis.zscore("s:due", "a") is None
    assert await redis.hexists("s:lease", "a") == 0


async def test_pop_with_a_lost_lease_changes_nothing(redis: Redis) -> None:
    await leased(redis)
    await redis.rpush("s:q:a", "x")
    assert await pop(redis, "stale-token", "x") == -1
    assert await redis.lrange("s:q:a", 0, -1) == ["x"]
    assert await redis.zscore("s:due", "a") == 5000


# -- worker/queue/pop_many.lua -----------------------------------------------------------------


async def pop_many(redis: Redis, token: str, limit: int, *handled: str) -> Any:
    script = run(redis, "worker.queue", "pop_many")
    return await script(
        keys=["s:due", "s:lease", "s:q:a"], args=["a", token, 9_000, limit, *handled]
    )


async def test_pop_many_drops_the_handled_heads_and_returns_the_next_items(redis: Redis) -> None:
    await leased(redis)
    await redis.rpush("s:q:a", "x", "y", "z", "w")
    assert await pop_many(redis, "tok", 2, "x", "y") == ["z", "w"]
    assert await redis.lrange("s:q:a", 0, -1) == ["z", "w"]
    assert await redis.zscore("s:due", "a") == 9000
    assert await redis.hget("s:lease", "a") == "tok"
    assert await pop_many(redis, "tok", 1, "z") == ["w"]


async def test_pop_many_stops_at_the_first_handled_item_that_is_not_the_head(
    redis: Redis,
) -> None:
    await leased(redis)
    await redis.rpush("s:q:a", "x", "q", "y")
    assert await pop_many(redis, "tok", 5, "x", "y") == ["q", "y"]
    assert await redis.lrange("s:q:a", 0, -1) == ["q", "y"]


async def test_pop_many_of_the_last_items_gives_the_member_back(redis: Redis) -> None:
    await leased(redis)
    await redis.rpush("s:q:a", "x", "y")
    assert await pop_many(redis, "tok", 5, "x", "y") == []
    assert await redis.exists("s:q:a") == 0
    assert await redis.zscore("s:due", "a") is None
    assert await redis.hexists("s:lease", "a") == 0


async def test_pop_many_with_nothing_handled_only_reads_and_renews(redis: Redis) -> None:
    await leased(redis)
    await redis.rpush("s:q:a", "x", "y")
    assert await pop_many(redis, "tok", 1) == ["x"]
    assert await redis.lrange("s:q:a", 0, -1) == ["x", "y"]
    assert await redis.zscore("s:due", "a") == 9000


async def test_pop_many_with_a_lost_lease_changes_nothing(redis: Redis) -> None:
    await leased(redis)
    await redis.rpush("s:q:a", "x")
    assert await pop_many(redis, "stale-token", 5, "x") == -1
    assert await redis.lrange("s:q:a", 0, -1) == ["x"]
    assert await redis.zscore("s:due", "a") == 5000
    assert await redis.hget("s:lease", "a") == "tok"


# -- worker/reserve_slot.lua -------------------------------------------------------------------


async def reserve(
    redis: Redis, now: float, interval: float, burst: float, max_wait: float
) -> float:
    script = run(redis, "worker", "reserve_slot")
    return float(await script(keys=["rate"], args=[now, interval, burst, max_wait]))


async def test_reserve_slot_first_call_goes_at_once_and_books_the_next(redis: Redis) -> None:
    assert await reserve(redis, 1_000, 100, 0, -1) == 0
    assert float(await redis.get("rate")) == 1100
    assert 1000 < await redis.pttl("rate") <= 1100


async def test_reserve_slot_calls_queue_up_one_interval_apart(redis: Redis) -> None:
    waits = [await reserve(redis, 1_000, 100, 0, -1) for _ in range(3)]
    assert waits == [0, 100, 200]


async def test_reserve_slot_burst_lets_calls_go_ahead_of_the_timetable(redis: Redis) -> None:
    waits = [await reserve(redis, 1_000, 100, 200, -1) for _ in range(4)]
    assert waits == [0, 0, 0, 100]


async def test_reserve_slot_a_timetable_in_the_past_counts_from_now(redis: Redis) -> None:
    await redis.set("rate", 500)
    assert await reserve(redis, 1_000, 100, 0, -1) == 0
    assert float(await redis.get("rate")) == 1100


async def test_reserve_slot_beyond_max_wait_reserves_nothing(redis: Redis) -> None:
    await redis.set("rate", 1_500)
    assert await reserve(redis, 1_000, 100, 0, 300) == -500
    assert float(await redis.get("rate")) == 1500
    assert await reserve(redis, 1_000, 100, 0, 500) == 500  # within the bound: booked
    assert float(await redis.get("rate")) == 1600


# -- worker/webhooks/peek.lua ------------------------------------------------------------------


async def peek(redis: Redis) -> Any:
    script = run(redis, "worker.webhooks", "peek")
    return await script(
        keys=["q:list", keys.gone("q")],
        args=[keys.delivery(""), keys.event_body(""), "12.5", keys.webhook_url("")],
    )


async def pending_head(redis: Redis, state: str = "pending") -> None:
    await redis.rpush("q:list", "d1", "d2")
    await redis.hset(keys.delivery("d1"), mapping={"state": state, "event_id": "e1"})


def as_dict(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


async def test_peek_empty_queue(redis: Redis) -> None:
    assert await peek(redis) is None


async def test_peek_pending_head_returns_its_body_and_marks_it_in_flight(redis: Redis) -> None:
    await pending_head(redis)
    await redis.set(keys.event_body("e1"), '{"event":"x"}')
    did, record, gone, body = await peek(redis)
    assert (did, gone, body) == ("d1", 0, '{"event":"x"}')
    assert as_dict(record) == {"state": "pending", "event_id": "e1"}  # read before the mark
    assert await redis.hget(keys.delivery("d1"), "inflight") == "12.5"


async def test_peek_joins_a_body_kept_in_its_record_in_order(redis: Redis) -> None:
    await pending_head(redis)
    note = "".join(uuid.uuid4().hex for _ in range(8))  # hardly compressible
    packed = pack_body(orjson.dumps({"event": "room_started", "note": note}))
    pieces = body_fields(packed)
    assert len(pieces) > 2 and all(len(v) <= 64 for v in pieces.values())
    # Stored out of order (a hash in the hashtable encoding keeps no order): joined by index.
    await redis.hset(keys.delivery("d1"), mapping=dict(reversed(pieces.items())))
    await redis.set(keys.event_body("e1"), "not this one")
    did, record, gone, body = await peek(redis)
    assert (did, gone, body) == ("d1", 0, packed)
    assert as_dict(record) == {"state": "pending", "event_id": "e1"}  # no pieces in it


async def test_peek_finished_head_returns_its_record_only(redis: Redis) -> None:
    await pending_head(redis, state="delivered")
    await redis.set(keys.event_body("e1"), "{}")
    did, record = await peek(redis)
    assert (did, as_dict(record)["state"]) == ("d1", "delivered")
    assert await redis.hexists(keys.delivery("d1"), "inflight") == 0


async def test_peek_pruned_head_has_an_empty_record(redis: Redis) -> None:
    await redis.rpush("q:list", "d9")
    assert await peek(redis) == ["d9", []]


async def test_peek_gone_queue_is_flagged_and_not_marked(redis: Redis) -> None:
    await pending_head(redis)
    await redis.set(keys.event_body("e1"), "{}")
    await redis.set(keys.gone("q"), 1)
    did, _record, gone = await peek(redis)
    assert (did, gone) == ("d1", 1)
    assert await redis.hexists(keys.delivery("d1"), "inflight") == 0


async def test_peek_expired_body_is_reported_without_a_body(redis: Redis) -> None:
    await pending_head(redis)
    did, _record, gone = await peek(redis)
    assert (did, gone) == ("d1", 0)
    assert await redis.hexists(keys.delivery("d1"), "inflight") == 0


async def test_peek_gives_the_url_a_record_names_by_its_hash(redis: Redis) -> None:
    await pending_head(redis)
    await redis.hset(keys.delivery("d1"), "uh", "abc123")
    await redis.set(keys.event_body("e1"), "{}")
    await redis.set(keys.webhook_url("abc123"), "http://127.0.0.1:9/hook")
    _did, record, _gone, body = await peek(redis)
    assert body == "{}"
    assert as_dict(record) == {
        "state": "pending",
        "event_id": "e1",
        "uh": "abc123",
        "url": "http://127.0.0.1:9/hook",
    }


async def test_peek_of_a_record_whose_url_expired_is_reported_without_a_body(
    redis: Redis,
) -> None:
    await pending_head(redis)
    await redis.hset(keys.delivery("d1"), "uh", "abc123")
    await redis.set(keys.event_body("e1"), "{}")
    did, record, gone = await peek(redis)
    assert (did, gone, "url" in as_dict(record)) == ("d1", 0, False)
    assert await redis.hexists(keys.delivery("d1"), "inflight") == 0


# -- worker/webhooks/settle.lua ----------------------------------------------------------------


async def settle(
    redis: Redis,
    *,
    entry: str = '{"status":200}',
    attempts: int | str = 1,
    state: str = "delivered",
    reason: str = "",
    next_at: str = "",
    gone_ttl: int | str = "",
) -> int:
    script = run(redis, "worker.webhooks", "settle")
    k = [
        keys.delivery("d1"),
        keys.DELIVERY_COUNTS,
        keys.deliveries_in_state("pending"),
        keys.deliveries_in_state("dead"),
        keys.gone("q"),
    ]
    a = ["d1", entry, attempts, state, reason, next_at, "50.0", 600, gone_ttl]
    return int(await script(keys=k, args=a))


async def a_pending_delivery(redis: Redis) -> None:
    await redis.hset(
        keys.delivery("d1"),
        mapping={"state": "pending", "attempts": 0, "inflight": "1.0", "queue": "q", "held": "x"},
    )
    await redis.zadd(keys.deliveries_in_state("pending"), {"d1": 0})
    await redis.hset(keys.DELIVERY_COUNTS, "pending", 1)


async def test_settle_delivered_moves_state_counts_and_index(redis: Redis) -> None:
    await a_pending_delivery(redis)
    assert await settle(redis) == 1
    record = await redis.hgetall(keys.delivery("d1"))
    # Finished, it keeps what the deliveries API shows: no queue, count or hold reason.
    assert record == {"state": "delivered", "finished": "50.0", "log": '{"status":200}'}
    assert await redis.hgetall(keys.DELIVERY_COUNTS) == {"pending": "0", "delivered": "1"}
    assert await redis.zcard(keys.deliveries_in_state("pending")) == 0
    assert await redis.zcard(keys.deliveries_in_state("dead")) == 0
    assert await redis.exists(keys.delivery_attempts("d1")) == 0
    assert 590 < await redis.ttl(keys.delivery("d1")) <= 600


@pytest.mark.parametrize("script", ["settle", "advance"])
async def test_a_finished_record_keeps_its_time_as_ms_after_its_ids(
    redis: Redis, script: str
) -> None:
    did = "dlv_" + f"{50_000_000 - 1_234:014x}" + "abcdef"  # created at 49.998766 s
    await redis.hset(keys.delivery(did), mapping={"state": "pending", "queue": "q"})
    await redis.hset("dq:lease", "q", "tok")
    await redis.rpush("q:list", did)
    k = [keys.delivery(did), *ADVANCE_KEYS[1:]]
    if script == "settle":
        a = [did, "", "", "delivered", "", "", "50.0", 600, ""]
        moved = await run(redis, "worker.webhooks", "settle")(keys=k[:5], args=a)
    else:
        a = [did, "", "", "delivered", "", "50.0", 600, "", "q", "tok", 9_000]
        prefixes = [keys.delivery(""), keys.event_body(""), keys.webhook_url("")]
        moved = (await run(redis, "worker.webhooks", "advance")(keys=k, args=[*a, *prefixes]))[0]
    assert int(moved) == 1
    assert await redis.hgetall(keys.delivery(did)) == {"state": "delivered", "fin": "1"}


async def test_settle_dead_with_a_reason_is_indexed_dead(redis: Redis) -> None:
    await a_pending_delivery(redis)
    assert await settle(redis, state="dead", reason="no more tries") == 1
    record = await redis.hgetall(keys.delivery("d1"))
    assert (record["state"], record["reason"]) == ("dead", "no more tries")
    assert await redis.zrange(keys.deliveries_in_state("dead"), 0, -1) == ["d1"]
    assert await redis.hget(keys.DELIVERY_COUNTS, "dead") == "1"
    assert await redis.exists(keys.gone("q")) == 0


async def test_settle_gone_sets_the_queues_flag(redis: Redis) -> None:
    await a_pending_delivery(redis)
    assert await settle(redis, state="dead", reason="410", gone_ttl=300) == 1
    assert await redis.get(keys.gone("q")) == "1"
    assert 290 < await redis.ttl(keys.gone("q")) <= 300


async def test_settle_retry_stays_pending_with_its_next_time(redis: Redis) -> None:
    await a_pending_delivery(redis)
    assert await settle(redis, state="pending", next_at="60.000") == 1
    record = await redis.hgetall(keys.delivery("d1"))
    assert record == {
        "state": "pending",
        "attempts": "1",
        "next_at": "60.000",
        "queue": "q",
        "held": "x",
        "log": '{"status":200}',
    }
    assert await settle(redis, entry='{"status":503}', attempts=2, state="pending") == 1
    log = await redis.hget(keys.delivery("d1"), "log")
    assert log == '{"status":200}\n{"status":503}'  # one line per attempt, oldest first
    assert await redis.hget(keys.DELIVERY_COUNTS, "pending") == "1"
    assert await redis.zrange(keys.deliveries_in_state("pending"), 0, -1) == ["d1"]


async def test_settle_retry_without_a_time_keeps_next_at(redis: Redis) -> None:
    await a_pending_delivery(redis)
    await redis.hset(keys.delivery("d1"), "next_at", "55.0")
    assert await settle(redis, state="pending") == 1
    assert await redis.hget(keys.delivery("d1"), "next_at") == "55.0"


async def test_settle_without_an_attempt_logs_nothing_and_keeps_the_count(redis: Redis) -> None:
    await a_pending_delivery(redis)
    assert await settle(redis, entry="", attempts="", state="pending") == 1
    assert await redis.hexists(keys.delivery("d1"), "log") == 0
    assert await redis.hget(keys.delivery("d1"), "attempts") == "0"
    assert await settle(redis, entry="", attempts="", state="dead", reason="body expired") == 1
    assert await redis.hexists(keys.delivery("d1"), "log") == 0


async def test_settle_a_finished_delivery_only_logs_the_attempt(redis: Redis) -> None:
    await redis.hset(keys.delivery("d1"), mapping={"state": "delivered", "attempts": 2})
    assert await settle(redis, attempts=3, state="dead", reason="late") == 0
    record = await redis.hgetall(keys.delivery("d1"))
    assert record == {"state": "delivered", "attempts": "2", "log": '{"status":200}'}
    assert await redis.exists(keys.DELIVERY_COUNTS) == 0


async def test_settle_a_pruned_delivery_writes_nothing(redis: Redis) -> None:
    assert await settle(redis) == -1
    assert await redis.exists(keys.delivery("d1"), keys.DELIVERY_COUNTS) == 0


# -- worker/webhooks/advance.lua ---------------------------------------------------------------

ADVANCE_KEYS = [
    keys.delivery("d1"),
    keys.DELIVERY_COUNTS,
    keys.deliveries_in_state("pending"),
    keys.deliveries_in_state("dead"),
    keys.gone("q"),
    "dq:due",
    "dq:lease",
    "q:list",
]


async def advance(
    redis: Redis,
    *,
    state: str = "delivered",
    reason: str = "",
    gone_ttl: int | str = "",
    claim: str = "tok",
) -> Any:
    script = run(redis, "worker.webhooks", "advance")
    a = ["d1", '{"status":200}', 1, state, reason, "50.0", 600, gone_ttl, "q", claim, 9_000]
    prefixes = [keys.delivery(""), keys.event_body(""), keys.webhook_url("")]
    return await script(keys=ADVANCE_KEYS, args=[*a, *prefixes])


async def the_three_scripts(
    redis: Redis, *, state: str = "delivered", reason: str = "", gone_ttl: int | str = ""
) -> Any:
    """What the dispatcher did before advance.lua: settle, pop, peek (same arguments)."""
    moved = 0
    if state:
        script = run(redis, "worker.webhooks", "settle")
        a = ["d1", '{"status":200}', 1, state, reason, "", "50.0", 600, gone_ttl]
        moved = int(await script(keys=ADVANCE_KEYS[:5], args=a))
    pop = run(redis, "worker.queue", "pop")
    if int(await pop(keys=["dq:due", "dq:lease", "q:list"], args=["q", "tok", "d1", 9_000])) < 0:
        return [moved, -1]
    peek = run(redis, "worker.webhooks", "peek")
    head = await peek(
        keys=["q:list", keys.gone("q")],
        args=[keys.delivery(""), keys.event_body(""), "50.0", keys.webhook_url("")],
    )
    if head is None:
        release = run(redis, "worker.queue", "release")
        k = ["dq:due", "dq:lease", "q:list", "dq:wake"]
        await release(keys=k, args=["q", "tok", "", 0, 64])
        return [moved, 0]
    return [moved, 1, *head]


async def snapshot(redis: Redis) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted(await redis.keys("*")):
        kind = await redis.type(key)
        if kind == "hash":
            out[key] = await redis.hgetall(key)
        elif kind == "list":
            out[key] = await redis.lrange(key, 0, -1)
        elif kind == "zset":
            out[key] = await redis.zrange(key, 0, -1, withscores=True)
        else:
            out[key] = await redis.get(key)
        out[f"{key} ttl>0"] = await redis.ttl(key) > 0
    return out


async def a_queue(
    redis: Redis, head_state: str = "pending", next_state: str = "pending", only_one: bool = False
) -> None:
    await redis.zadd("dq:due", {"q": 5_000})
    await redis.hset("dq:lease", "q", "tok")
    await redis.rpush("q:list", *(["d1"] if only_one else ["d1", "d2", "d3"]))
    if head_state:
        await redis.hset(
            keys.delivery("d1"),
            mapping={"state": head_state, "attempts": 0, "inflight": "1.0", "event_id": "e1"},
        )
        await redis.zadd(keys.deliveries_in_state("pending"), {"d1": 0})
        await redis.hset(keys.DELIVERY_COUNTS, "pending", 2)
    await redis.hset(keys.delivery("d2"), mapping={"state": next_state, "event_id": "e2"})
    await redis.set(keys.event_body("e2"), '{"event":"y"}')


ADVANCE_CASES = {
    "delivered, next pending": ({}, {}),
    "dead after a 410, next dead-lettered in turn": (
        {},
        {"state": "dead", "reason": "410", "gone_ttl": 300},
    ),
    "head already finished (nothing to settle)": ({"head_state": "delivered"}, {"state": ""}),
    "head pruned": ({"head_state": ""}, {}),
    "next already finished": ({"next_state": "delivered"}, {}),
    "the last one": ({"only_one": True}, {}),
}


@pytest.mark.parametrize("case", ADVANCE_CASES)
async def test_advance_does_what_settle_pop_and_peek_did(redis: Redis, case: str) -> None:
    setup, args = ADVANCE_CASES[case]
    await a_queue(redis, **setup)
    separately = await the_three_scripts(redis, **args)
    after_three = await snapshot(redis)
    await redis.flushdb()
    await a_queue(redis, **setup)
    assert await advance(redis, **args) == separately
    assert await snapshot(redis) == after_three


async def test_advance_returns_the_next_head_marked_in_flight(redis: Redis) -> None:
    await a_queue(redis)
    settled, more, did, record, gone, body = await advance(redis)
    assert (settled, more, did, gone, body) == (1, 1, "d2", 0, '{"event":"y"}')
    assert as_dict(record) == {"state": "pending", "event_id": "e2"}
    assert await redis.hget(keys.delivery("d2"), "inflight") == "50.0"
    assert await redis.lrange("q:list", 0, -1) == ["d2", "d3"]
    assert await redis.zscore("dq:due", "q") == 9000


async def test_advance_of_the_last_delivery_gives_the_empty_queue_back(redis: Redis) -> None:
    await a_queue(redis, only_one=True)
    assert await advance(redis) == [1, 0]
    assert await redis.exists("q:list", "dq:lease") == 0
    assert await redis.zscore("dq:due", "q") is None


async def test_advance_with_a_lost_lease_settles_but_pops_nothing(redis: Redis) -> None:
    await a_queue(redis)
    assert await advance(redis, claim="stale") == [1, -1]
    assert await redis.hget(keys.delivery("d1"), "state") == "delivered"
    assert await redis.lrange("q:list", 0, -1) == ["d1", "d2", "d3"]
    assert await redis.zscore("dq:due", "q") == 5000


# -- worker/webhooks/prune.lua -----------------------------------------------------------------


async def prune(redis: Redis) -> int:
    script = run(redis, "worker.webhooks", "prune")
    k = [
        keys.delivery("d1"),
        keys.delivery_attempts("d1"),
        keys.DELIVERIES,
        keys.deliveries_by_room("r1"),
        keys.deliveries_in_state("pending"),
        keys.deliveries_in_state("dead"),
        keys.DELIVERY_COUNTS,
    ]
    return int(await script(keys=k, args=["d1"]))


async def indexed(redis: Redis, state: str | None) -> None:
    if state:
        await redis.hset(keys.delivery("d1"), "state", state)
        await redis.hset(keys.DELIVERY_COUNTS, state, 5)
    await redis.rpush(keys.delivery_attempts("d1"), json.dumps({"status": 500}))
    for index in (
        keys.DELIVERIES,
        keys.deliveries_by_room("r1"),
        keys.deliveries_in_state(state if state in ("pending", "dead") else "dead"),
    ):
        await redis.zadd(index, {"d1": 0, "d2": 0})


INDEXES = (
    keys.DELIVERIES,
    keys.deliveries_by_room("r1"),
    keys.deliveries_in_state("pending"),
    keys.deliveries_in_state("dead"),
)


@pytest.mark.parametrize("state", ["delivered", "dead"])
async def test_prune_removes_a_finished_delivery_and_uncounts_it(redis: Redis, state: str) -> None:
    await indexed(redis, state)
    assert await prune(redis) == 1
    assert await redis.exists(keys.delivery("d1"), keys.delivery_attempts("d1")) == 0
    for index in INDEXES:
        assert await redis.zscore(index, "d1") is None
    assert await redis.hget(keys.DELIVERY_COUNTS, state) == "4"
    assert await redis.zscore(keys.DELIVERIES, "d2") == 0  # others untouched


async def test_prune_keeps_a_pending_delivery(redis: Redis) -> None:
    await indexed(redis, "pending")
    assert await prune(redis) == 0
    assert await redis.hget(keys.delivery("d1"), "state") == "pending"
    assert await redis.zscore(keys.deliveries_in_state("pending"), "d1") == 0
    assert await redis.hget(keys.DELIVERY_COUNTS, "pending") == "5"


async def test_prune_an_expired_record_drops_its_index_entries(redis: Redis) -> None:
    await indexed(redis, None)
    assert await prune(redis) == 2
    for index in INDEXES:
        assert await redis.zscore(index, "d1") is None
    assert await redis.exists(keys.DELIVERY_COUNTS) == 0


async def test_prune_drops_the_url_index_entry_when_given(redis: Redis) -> None:
    await indexed(redis, "dead")
    await redis.zadd(keys.deliveries_by_url("u1"), {"d1": 0, "d2": 0})
    script = run(redis, "worker.webhooks", "prune")
    k = [
        keys.delivery("d1"),
        keys.delivery_attempts("d1"),
        keys.DELIVERIES,
        keys.deliveries_by_room("r1"),
        keys.deliveries_in_state("pending"),
        keys.deliveries_in_state("dead"),
        keys.DELIVERY_COUNTS,
        keys.deliveries_by_url("u1"),
    ]
    assert int(await script(keys=k, args=["d1"])) == 1
    assert await redis.zrange(keys.deliveries_by_url("u1"), 0, -1) == ["d2"]


# -- worker/webhooks/host_admit.lua ------------------------------------------------------------

HOST = "http://h:80"


async def admit(
    redis: Redis, now: int, qid: str = "q1", rps: float = 0, max_sleep: int = 1000
) -> list[Any]:
    script = run(redis, "worker.webhooks", "host_admit")
    k = [
        keys.host(HOST),
        keys.host_waiting(HOST),
        keys.host_tat(HOST),
        keys.HOSTS,
        keys.delivery(f"d-{qid}"),
    ]
    args = [qid, now, 1000, rps, max_sleep, HOST, "breaker open", "rate"]
    return list(await script(keys=k, args=args))


async def test_host_admit_a_closed_host_goes_and_is_listed(redis: Redis) -> None:
    await redis.hset(keys.delivery("d-q1"), mapping={"inflight": "1", "held": "x"})
    assert await admit(redis, 5_000) == [1, 0, 0, 0]
    assert await redis.zscore(keys.HOSTS, HOST) == 5_000
    assert await redis.hgetall(keys.delivery("d-q1")) == {"inflight": "1"}  # held cleared


async def test_host_admit_the_rate_spaces_attempts_then_holds(redis: Redis) -> None:
    assert (await admit(redis, 10_000, rps=10))[:2] == [1, 0]
    assert (await admit(redis, 10_000, rps=10))[:2] == [1, 100]  # the next slot, 100 ms on
    held = await admit(redis, 10_000, rps=10, max_sleep=150)
    assert held == [0, 10_200, "rate"]  # beyond the sleep bound: nothing reserved, held
    rec = await redis.hgetall(keys.delivery("d-q1"))
    assert rec == {"held": "rate", "next_at": "10.200"}


async def test_host_admit_a_lowered_rate_applies_until_it_lapses(redis: Redis) -> None:
    await redis.hset(keys.host(HOST), mapping={"slow_rps": 2, "slow_until": 20_000})
    await admit(redis, 10_000, rps=10)
    assert (await admit(redis, 10_000, rps=10))[:2] == [1, 500]
    await redis.delete(keys.host_tat(HOST))
    await admit(redis, 30_000, rps=10)
    assert (await admit(redis, 30_000, rps=10))[:2] == [1, 100]


async def test_host_admit_an_open_breaker_lets_the_longest_waiting_probe(redis: Redis) -> None:
    await redis.hset(keys.host(HOST), mapping={"state": "open", "probe_at": 2_000, "failures": 7})
    assert await admit(redis, 1_000, "q1") == [0, 2_000, "breaker"]  # first in line, too early
    assert await admit(redis, 1_500, "q2") == [0, 3_000, "breaker"]  # behind q1
    assert await redis.hget(keys.delivery("d-q2"), "held") == "breaker open"
    assert await admit(redis, 2_100, "q2") == [0, 3_000, "breaker"]  # q1's turn
    assert await admit(redis, 2_100, "q1") == [1, 0, 1, 7]  # the probe
    assert await redis.hget(keys.host(HOST), "probe_at") == "3100"
    assert await redis.zrange(keys.host_waiting(HOST), 0, -1) == ["q2"]


async def test_host_admit_a_first_in_line_that_never_came_lets_another_probe(
    redis: Redis,
) -> None:
    await redis.hset(keys.host(HOST), mapping={"state": "open", "probe_at": 2_000})
    await redis.zadd(keys.host_waiting(HOST), {"gone": 1})
    assert (await admit(redis, 2_500, "q2"))[0] == 0
    assert (await admit(redis, 3_000, "q2"))[:3] == [1, 0, 1]


# -- worker/webhooks/host_admit_head.lua -------------------------------------------------------


async def advance_and_admit(
    redis: Redis, *, claim: str = "tok", rps: float = 10, mark: str = "50.0"
) -> list[Any]:
    """advance.lua, then host_admit.lua for the new head, in one script (as the dispatcher)."""
    second = lua.source("worker.webhooks", "host_admit_head") + lua.source(
        "worker.webhooks", "host_admit"
    )
    script = redis.register_script(lua.chained_source(("worker.webhooks", "advance"), second))
    a = ["d1", '{"status":200}', 1, "delivered", "", "50.0", 600, "", "q", claim, 9_000]
    a += [keys.delivery(""), keys.event_body("")]
    k = [keys.host(HOST), keys.host_waiting(HOST), keys.host_tat(HOST), keys.HOSTS, ""]
    k += ["q:list", "dq:lease"]
    b = ["q", 10_000, 1000, rps, 1000, HOST, "breaker open", "rate", "q", claim]
    b += [keys.delivery(""), mark]
    both = await script(keys=[*ADVANCE_KEYS, *k], args=[len(ADVANCE_KEYS), len(a), *a, *b])
    return list(both)


async def test_host_admit_head_asks_for_the_head_the_step_marked(redis: Redis) -> None:
    await a_queue(redis)
    await redis.hset(keys.delivery("d2"), "held", "rate")
    advanced, admitted = await advance_and_admit(redis)
    assert advanced[:3] == [1, 1, "d2"]  # the step's own answer, unchanged
    assert admitted == [1, 0, 0, 0]
    assert await redis.zscore(keys.HOSTS, HOST) == 10_000
    assert await redis.get(keys.host_tat(HOST)) == "10100.000"  # its rate slot reserved
    record = await redis.hgetall(keys.delivery("d2"))
    assert (record["inflight"], "held" in record) == ("50.0", False)


async def test_host_admit_head_a_held_head_is_unmarked_and_says_why(redis: Redis) -> None:
    await a_queue(redis)
    await redis.hset(keys.host(HOST), mapping={"state": "open", "probe_at": 20_000})
    advanced, admitted = await advance_and_admit(redis)
    assert advanced[:3] == [1, 1, "d2"]
    assert admitted == [0, 20_000, "breaker"]
    record = await redis.hgetall(keys.delivery("d2"))
    assert (record["held"], "inflight" in record) == ("breaker open", False)


async def test_host_admit_head_after_peek_asks_for_the_head_it_marked(redis: Redis) -> None:
    await a_queue(redis)
    await redis.lpop("q:list")  # d2 is the head of the claimed queue
    second = lua.source("worker.webhooks", "host_admit_head") + lua.source(
        "worker.webhooks", "host_admit"
    )
    script = redis.register_script(lua.chained_source(("worker.webhooks", "peek"), second))
    a = [keys.delivery(""), keys.event_body(""), "60.0"]
    k = [keys.host(HOST), keys.host_waiting(HOST), keys.host_tat(HOST), keys.HOSTS, ""]
    b = ["q", 10_000, 1000, 0, 1000, HOST, "breaker open", "rate", "q", "tok"]
    both = await script(
        keys=["q:list", keys.gone("q"), *k, "q:list", "dq:lease"],
        args=[2, len(a), *a, *b, keys.delivery(""), "60.0"],
    )
    peeked, admitted = both
    assert (peeked[0], peeked[2:]) == ("d2", [0, '{"event":"y"}'])  # peek.lua's own answer
    assert admitted == [1, 0, 0, 0]
    assert await redis.zscore(keys.HOSTS, HOST) == 10_000
    assert await redis.hget(keys.delivery("d2"), "inflight") == "60.0"


@pytest.mark.parametrize(
    "case", ["the last one", "lease lost", "next finished", "next's body expired", "not marked"]
)
async def test_host_admit_head_asks_nothing_without_a_head_to_attempt(
    redis: Redis, case: str
) -> None:
    next_state = "delivered" if case == "next finished" else "pending"
    await a_queue(redis, only_one=case == "the last one", next_state=next_state)
    if case == "next's body expired":
        await redis.delete(keys.event_body("e2"))
    _, admitted = await advance_and_admit(
        redis,
        claim="stale" if case == "lease lost" else "tok",
        mark="" if case == "not marked" else "50.0",
    )
    assert admitted == [2]
    # No rate slot taken, the host not listed as attempted, the next record not touched.
    assert await redis.exists(keys.host_tat(HOST), keys.HOSTS) == 0
    assert await redis.hexists(keys.delivery("d2"), "held") == 0


# -- worker/webhooks/host_observe.lua ----------------------------------------------------------


async def observe(
    redis: Redis, kind: str, now: int, retry_after: float = -1, threshold: int = 3
) -> int:
    script = run(redis, "worker.webhooks", "host_observe")
    k = [
        keys.host(HOST),
        keys.host_waiting(HOST),
        keys.HOSTS_OPEN,
        keys.schedule_due(keys.DELIVERY_QUEUES),
        keys.schedule_leases(keys.DELIVERY_QUEUES),
        keys.schedule_wake(keys.DELIVERY_QUEUES),
    ]
    args = [kind, now, threshold, 1000, retry_after, 50, HOST, 1, 30_000]
    return int(await script(keys=k, args=args))


async def test_host_observe_failures_in_a_row_open_the_breaker(redis: Redis) -> None:
    assert await observe(redis, "fail", 1) == 0
    assert await observe(redis, "ok", 2) == 0  # an answer resets the count
    assert [await observe(redis, "fail", t) for t in (3, 4, 5)] == [0, 0, 1]
    assert await redis.hgetall(keys.host(HOST)) == {
        "failures": "3",
        "state": "open",
        "opened": "5",
        "probe_at": "1005",
    }
    assert await redis.smembers(keys.HOSTS_OPEN) == {HOST}
    assert await observe(redis, "fail", 6) == 0  # already open


async def test_host_observe_an_answer_closes_it_and_wakes_the_waiting_queues(
    redis: Redis,
) -> None:
    await redis.hset(keys.host(HOST), mapping={"state": "open", "probe_at": 9, "failures": 4})
    await redis.sadd(keys.HOSTS_OPEN, HOST)
    await redis.zadd(keys.host_waiting(HOST), {"q1": 1, "q2": 2})
    await redis.zadd(keys.schedule_due(keys.DELIVERY_QUEUES), {"q1": 99_999, "q2": 99_999})
    await redis.hset(
        keys.schedule_leases(keys.DELIVERY_QUEUES), "q2", "token"
    )  # a consumer holds q2 under its lease
    assert await observe(redis, "ok", 500) == 2
    assert await redis.hget(keys.host(HOST), "state") == "closed"
    assert await redis.hget(keys.host(HOST), "failures") == "0"
    assert await redis.zscore(keys.schedule_due(keys.DELIVERY_QUEUES), "q1") == 500
    assert await redis.zscore(keys.schedule_due(keys.DELIVERY_QUEUES), "q2") == 99_999
    assert await redis.exists(keys.host_waiting(HOST), keys.HOSTS_OPEN) == 0
    assert await redis.llen(keys.schedule_wake(keys.DELIVERY_QUEUES)) == 1


async def test_host_observe_retry_after_halves_the_rate_for_a_while(redis: Redis) -> None:
    await observe(redis, "fail", 1_000, retry_after=60)
    assert await redis.hmget(keys.host(HOST), "slow_rps", "slow_until") == ["25", "61000"]
    await observe(redis, "fail", 2_000, retry_after=1)
    assert await redis.hmget(keys.host(HOST), "slow_rps", "slow_until") == ["12.5", "32000"]
