"""The typed records and their one writer (`Store`): what is written reads back the same."""

from __future__ import annotations

import asyncio
import json

import pytest
from redis.asyncio import Redis
from redis.exceptions import WatchError

from tests.support.api import seed_request
from worker import keys
from worker.arqueue import arq_job
from worker.rooms.records import CreateClaim, Store
from worker.rooms.session import (
    CreateJob,
    JobState,
    PastSession,
    RoomSession,
    RoomState,
    compact_json,
)
from worker.webhooks.delivery import (
    Delivery,
    DeliveryState,
    id_time,
    new_cmds,
    queue_id,
    reopen_cmds,
    resolve_urls,
)
from worker.webhooks.engine import new_delivery_id


def a_session(**changes: object) -> RoomSession:
    values: dict[str, object] = {
        "room_id": "r1",
        "state": RoomState.CREATED,
        "job_id": "j1",
        "sid": "RM_1",
        "info": {"sid": "RM_1", "name": "r1", "creation_time": "1700000000"},
        "title": "Room one",
        "webhook_url": "http://127.0.0.1:9/hook",
        "created": 1_700_000_000,
        "empty_timeout": 60,
        "duration": 5,
    }
    values.update(changes)
    return RoomSession(**values)  # type: ignore[arg-type]


async def test_a_created_session_reads_back_as_written(redis: Redis) -> None:
    store = Store(redis, job_ttl_s=60)
    session = a_session()
    async with redis.pipeline(transaction=True) as pipe:
        store.created_cmds(pipe, session, sid_ttl_s=60)
        await pipe.execute()
    assert await store.session("r1") == session
    assert await redis.zscore(keys.ACTIVE_ROOMS, "r1") == 1_700_000_000
    assert await redis.get(keys.sid("RM_1")) == "r1"


async def test_joins_and_leaves_count_participants_and_activate(redis: Redis) -> None:
    store = Store(redis, job_ttl_s=60)
    async with redis.pipeline(transaction=True) as pipe:
        store.created_cmds(pipe, a_session(), sid_ttl_s=60)
        for who, count, came in (("alice", 1, True), ("bob", 2, True), ("alice", 1, False)):
            store.presence_cmds(
                pipe, "r1", "RM_1", came=[who] if came else [], went=[] if came else [who],
                participants=count, joined=int(came), active=came,
            )  # fmt: skip
        await pipe.execute()
    session = await store.session("r1")
    assert (session.state, session.participants, session.joined) == (RoomState.ACTIVE, 1, 2)
    assert await redis.smembers(keys.members("RM_1")) == {"bob"}


async def test_several_comings_and_goings_are_written_as_their_net_effect(redis: Redis) -> None:
    store = Store(redis, job_ttl_s=60)
    async with redis.pipeline(transaction=True) as pipe:
        store.created_cmds(pipe, a_session(), sid_ttl_s=60)
        store.presence_cmds(
            pipe, "r1", "RM_1", came=["alice"], went=[], participants=1, joined=1, active=True
        )
        store.presence_cmds(
            pipe, "r1", "RM_1", came=["bob", "carol"], went=["alice"], participants=2,
            joined=2, active=True,
        )  # fmt: skip
        await pipe.execute()
    session = await store.session("r1")
    assert (session.state, session.participants, session.joined) == (RoomState.ACTIVE, 2, 3)
    assert await redis.smembers(keys.members("RM_1")) == {"bob", "carol"}
    assert 0 < await redis.ttl(keys.members("RM_1")) <= 60
    assert session.live and not session.pending


async def test_an_ended_session_is_filed_under_past_rooms(redis: Redis) -> None:
    store = Store(redis, job_ttl_s=60)
    session = a_session(joined=3)
    async with redis.pipeline(transaction=True) as pipe:
        store.created_cmds(pipe, session, sid_ttl_s=60)
        store.ended_cmds(pipe, session, ended=1_700_000_100.5, reason="timer", ttl_s=60)
        await pipe.execute()
    ended = await store.session("r1")
    assert (ended.state, ended.end_reason, ended.ended) == (RoomState.ENDED, "timer", 1_700_000_100)
    assert await redis.zscore(keys.ACTIVE_ROOMS, "r1") is None
    past = PastSession.from_hash(await redis.hgetall(keys.past_room("RM_1")))
    assert past == PastSession.of(session, ended=1_700_000_100.5, reason="timer")
    assert past.joined_participants == 3
    assert await store.past_session("RM_1") == past
    assert await store.past_session("RM_unknown") is None
    assert await store.past_session("") is None
    assert await redis.zscore(keys.past_by_room("r1"), "RM_1") == 1_700_000_100.5


async def test_a_job_moves_through_its_states(redis: Redis) -> None:
    store = Store(redis, job_ttl_s=60)
    job = CreateJob("j1", room_id="r1", state=JobState.QUEUED, request={"room_id": "r1"})
    await redis.hset(keys.job("j1"), mapping=job.to_mapping())
    await redis.zadd(keys.QUEUED_JOBS, {"j1": 1})
    (read,) = await store.create_jobs(["j1"])
    assert read == job and not read.over
    async with redis.pipeline(transaction=True) as pipe:
        store.job_attempt_cmds(pipe, "j1", 1, "livekit unavailable")
        await pipe.execute()
    (tried,) = await store.create_jobs(["j1"])
    assert (tried.attempts, tried.last_error) == (1, "livekit unavailable")
    async with redis.pipeline(transaction=True) as pipe:
        store.job_complete_cmds(pipe, "j1", '{"sid":"RM_1"}', room_id="r1", event_id="ev1")
        await pipe.execute()
    (done,) = await store.create_jobs(["j1"])
    assert (done.state, done.room_id, done.sid, done.event_id) == (
        JobState.COMPLETE,
        "r1",
        "RM_1",
        "ev1",
    )
    assert done.over and done.request == {}  # what only the create needed is gone
    assert await redis.object("encoding", keys.job("j1")) == "listpack"  # short fields only
    assert await redis.zcard(keys.QUEUED_JOBS) == 0
    assert 0 < await redis.ttl(keys.job("j1")) <= 60


async def test_a_job_completed_from_its_sid_is_the_one_completed_from_its_room(
    redis: Redis,
) -> None:
    store = Store(redis, job_ttl_s=60)
    written = []
    for job_id in ("j1", "j2"):
        job = CreateJob(job_id, room_id="r1", state=JobState.QUEUED, request={"room_id": "r1"})
        await redis.hset(keys.job(job_id), mapping=job.to_mapping())
    async with redis.pipeline(transaction=True) as pipe:
        store.job_complete_cmds(pipe, "j1", '{"sid":"RM_1","name":"r1"}', event_id="ev1")
        store.job_done_cmds(pipe, "j2", room_id="r1", sid="RM_1", event_id="ev1")
        await pipe.execute()
    for job_id in ("j1", "j2"):
        written.append(await redis.hgetall(keys.job(job_id)))
    assert written[0]["state"] == "complete" and written[0]["sid"] == "RM_1"
    assert {**written[0], "job_id": "j2"} == written[1]


async def test_concurrent_start_creates_each_get_their_own_answer(redis: Redis) -> None:
    """Marks made in one loop turn share a round trip; each still answers for its own job."""
    store = Store(redis, job_ttl_s=60)
    states = {"q": "queued", "p": "in_progress", "c": "complete", "f": "failed", "u": None}
    for n in range(60):
        kind = "qpcfu"[n % 5]
        if states[kind]:
            await redis.hset(keys.job(f"{kind}{n}"), "state", str(states[kind]))
        await redis.hset(keys.room(f"r{n}"), mapping={"state": "queued", "job_id": f"{kind}{n}"})
    ids = [("qpcfu"[n % 5] + str(n), f"r{n}") for n in range(60)]
    answers = await asyncio.gather(*(store.start_create(job, room) for job, room in ids))
    assert answers == [job[0] in "qp" for job, _ in ids]
    rooms = [await redis.hget(keys.room(room), "state") for _, room in ids]
    assert rooms == ["creating" if job[0] in "qp" else "queued" for job, _ in ids]


async def test_sessions_read_several_rooms_in_request_order(redis: Redis) -> None:
    store = Store(redis, job_ttl_s=60)
    two = a_session(room_id="r2", sid="RM_2", state=RoomState.ACTIVE)
    async with redis.pipeline(transaction=True) as pipe:
        store.created_cmds(pipe, a_session(), sid_ttl_s=60)
        store.created_cmds(pipe, two, sid_ttl_s=60)
        await pipe.execute()
    assert await store.sessions(["r2", "nope", "r1"]) == [two, RoomSession("nope"), a_session()]


async def test_job_statuses_carry_a_complete_jobs_room_while_its_session_is_current(
    redis: Redis,
) -> None:
    store = Store(redis, job_ttl_s=60)
    session = a_session()
    queued = CreateJob("j2", room_id="r2", state=JobState.QUEUED, request={"room_id": "r2"})
    async with redis.pipeline(transaction=True) as pipe:
        store.created_cmds(pipe, session, sid_ttl_s=60)
        store.job_complete_cmds(pipe, "j1", '{"sid":"RM_1"}', room_id="r1")
        pipe.hset(keys.job("j2"), mapping=queued.to_mapping())
        store.job_scheduled_cmds(pipe, "j3", "r3", 1_900_000_000, now=1_800_000_000)
        await pipe.execute()
    (done, done_room), (waiting, none), (later, _), (unknown, _) = await store.job_statuses(
        ["j1", "j2", "j3", "jx"]
    )
    assert (done.state, done.sid, done_room) == (JobState.COMPLETE, "RM_1", session.info)
    assert (waiting.state, waiting.request, none) == (JobState.QUEUED, {}, {})  # no request read
    assert (later.state, later.start_at) == (JobState.SCHEDULED, 1_900_000_000)
    assert unknown.state is None
    async with redis.pipeline(transaction=True) as pipe:  # a newer create replaces the session
        store.created_cmds(pipe, a_session(sid="RM_2", info={"sid": "RM_2"}), sid_ttl_s=60)
        await pipe.execute()
    ((_, replaced),) = await store.job_statuses(["j1"])
    assert replaced == {"sid": "RM_1", "name": "r1"}


async def test_unknown_records_and_states_read_as_no_state() -> None:
    assert RoomSession.from_hash("r1", {}).state is None
    assert RoomSession.from_hash("r1", {"state": "bogus"}).state is None
    assert CreateJob.from_hash("j1", {}).over


async def read(redis: Redis, did: str) -> Delivery:
    """A delivery as the log reads it: its record, with the URL it names by hash."""
    record = await redis.hgetall(keys.delivery(did))
    await resolve_urls(redis, [record])
    return Delivery.from_hash(did, record)


async def test_a_delivery_is_written_reopened_and_read_through_its_owner(redis: Redis) -> None:
    did = new_delivery_id()
    url = "http://127.0.0.1:9/"
    new = Delivery(did, "ev1", "room_created", "r1", url, queue_id("r1", url), created=id_time(did))
    async with redis.pipeline(transaction=True) as pipe:
        new_cmds(pipe, new, 60)
        await pipe.execute()
    assert await read(redis, did) == new
    assert await redis.hget(keys.DELIVERY_COUNTS, "pending") == "1"
    await redis.hset(keys.delivery(did), mapping={"state": "dead", "reason": "410"})
    await redis.zadd(keys.deliveries_in_state("dead"), {did: 0})
    await redis.set(keys.gone(new.queue), 1)
    await redis.hincrby(keys.DELIVERY_COUNTS, "pending", -1)
    await redis.hincrby(keys.DELIVERY_COUNTS, "dead", 1)
    dead = await read(redis, did)
    assert (dead.state, dead.reason) == (DeliveryState.DEAD, "410")
    async with redis.pipeline(transaction=True) as pipe:
        reopen_cmds(pipe, dead, 60)
        await pipe.execute()
    again = await read(redis, did)
    assert again == new
    assert await redis.hgetall(keys.DELIVERY_COUNTS) == {"pending": "1", "dead": "0"}
    assert await redis.exists(keys.gone(new.queue)) == 0
    assert await redis.zscore(keys.deliveries_in_state("pending"), did) == 0


async def test_a_sessions_head_is_its_state_job_sid_and_room_only(redis: Redis) -> None:
    store = Store(redis, job_ttl_s=60)
    session = a_session()
    async with redis.pipeline(transaction=True) as pipe:
        store.created_cmds(pipe, session, sid_ttl_s=60)
        await pipe.execute()
    async with redis.pipeline(transaction=False) as pipe:
        store.head_cmd(pipe, "r1")
        store.head_cmd(pipe, "nope")
        rows = await pipe.execute()
    head, none = (store.head(r, row) for r, row in zip(("r1", "nope"), rows, strict=True))
    assert head == RoomSession(
        "r1", state=session.state, job_id="j1", sid="RM_1", info=session.info
    )
    assert none == RoomSession("nope")
    async with redis.pipeline(transaction=True) as pipe:
        assert await store.watch_head(pipe, "r1") == head
        await redis.hset(keys.room("r1"), "participants", 1)  # the session changes meanwhile
        pipe.multi()
        store.failed_cmds(pipe, "r1")
        with pytest.raises(WatchError):
            await pipe.execute()
    assert (await store.session("r1")).state == RoomState.CREATED


def seed_room() -> dict[str, object]:
    """LiveKit's room of a session created from the seed request: its metadata over 1 KB."""
    metadata = json.dumps(seed_request("r1")["metadata"], separators=(",", ":"))
    assert len(metadata) > 1000
    return {"sid": "RM_1", "name": "r1", "creation_time": "1700000000", "metadata": metadata}


async def claim_of_a_live_room(store: Store) -> CreateClaim:
    async with store.redis.pipeline(transaction=False) as pipe:
        store.claim_create_cmd(
            pipe,
            room_id="r1",
            job_id="j2",
            request="{}",
            event_id="e2",
            enqueue=arq_job("create", ("j2",), "create:j2"),
        )
        (raw,) = await pipe.execute()
    return Store.parse_claim(raw)


async def assert_reads_back(redis: Redis, store: Store, session: RoomSession) -> None:
    """`session` as every reader of "r1" sees it: the session, its head, a create's claim."""
    assert await store.session("r1") == session
    async with redis.pipeline(transaction=False) as pipe:
        store.head_cmd(pipe, "r1")
        (row,) = await pipe.execute()
    assert store.head("r1", row).info == session.info
    claim = await claim_of_a_live_room(store)
    assert (claim.kind, claim.info) == ("exists", session.info)


async def test_a_sessions_room_is_kept_packed_so_the_session_stays_compact(redis: Redis) -> None:
    store = Store(redis, job_ttl_s=60)
    session = a_session(info=seed_room())
    async with redis.pipeline(transaction=True) as pipe:
        store.created_cmds(pipe, session, sid_ttl_s=60)
        await pipe.execute()
    stored = await redis.hgetall(keys.room("r1"))
    assert "info" not in stored and "i0" in stored
    assert await redis.object("encoding", keys.room("r1")) == "listpack"
    await assert_reads_back(redis, store, session)
    async with redis.pipeline(transaction=True) as pipe:
        store.job_complete_cmds(pipe, "j1", json.dumps(session.info), room_id="r1")
        await pipe.execute()
    ((job, info),) = await store.job_statuses(["j1"])
    assert (job.state, info) == (JobState.COMPLETE, session.info)


async def test_a_session_written_with_its_room_as_json_is_still_read(redis: Redis) -> None:
    store = Store(redis, job_ttl_s=60)
    session = a_session(info=seed_room())
    older = {k: v for k, v in session.to_mapping().items() if not k[1:].isdigit()}
    await redis.hset(keys.room("r1"), mapping={**older, "info": json.dumps(session.info)})
    await assert_reads_back(redis, store, session)


@pytest.mark.parametrize(
    "value",
    [
        {
            "sid": "RM_1",
            "n": 3,
            "codecs": [{"mime": "audio/opus", "fmtp_line": ""}],
            "m": '{"a":1}',
        },
        {"title": "Raum für alle ✓", "ctl": 'a\x00b\x1f\n"\\'},
        {"del": "a\x7fb"},
        {"big": 2**70, "neg": -(2**63) - 1},
        [],
    ],
)
def test_compact_json_writes_the_bytes_json_writes(value: object) -> None:
    assert compact_json(value) == json.dumps(value, separators=(",", ":")).encode()
