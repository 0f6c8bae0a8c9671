"""`worker.batching` on a real Redis: concurrent script calls share a pipeline, and each caller
still gets exactly its own answer, its own error, and survives the others' cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ResponseError

from tests.support.api import eventually
from tests.support.servers import RedisServer, free_port
from worker.batching import Batcher, Call, batcher

ECHO = "return {KEYS[1], ARGV[1]}"
WRITE = "redis.call('RPUSH', KEYS[1], ARGV[1]) return redis.call('LLEN', KEYS[1])"
FAIL = "return redis.error_reply('refused ' .. ARGV[1])"


async def _reads(redis: Redis) -> int:
    """How many reads of its clients' sockets Redis has made so far (INFO stats)."""
    stats: dict[str, Any] = await redis.info("stats")
    return int(stats["total_reads_processed"])


async def test_concurrent_calls_share_one_pipeline_and_each_gets_its_own_answer(
    redis: Redis,
) -> None:
    echo = redis.register_script(ECHO)
    await redis.script_load(ECHO)
    batch = Batcher(redis)
    # Once first, so the two connections this takes are open (opening one costs reads too).
    await asyncio.gather(*(batch.call(echo, [f"k{i}"], [i]) for i in range(30)))
    before = await _reads(redis)
    answers = await asyncio.gather(*(batch.call(echo, [f"k{i}"], [i]) for i in range(30)))
    after = await _reads(redis)
    assert answers == [[f"k{i}", str(i)] for i in range(30)]
    # The first call went at once (nothing was out); the 29 made in the same turn went behind
    # it as one pipeline: two reads for thirty calls, plus the INFO that counted them.
    assert after - before <= 3


async def test_a_refused_call_fails_alone_and_the_rest_of_its_batch_is_answered(
    redis: Redis,
) -> None:
    echo, fail = redis.register_script(ECHO), redis.register_script(FAIL)
    batch = Batcher(redis)
    results = await asyncio.gather(
        *(batch.call(fail if i % 3 == 1 else echo, [f"k{i}"], [i]) for i in range(9)),
        return_exceptions=True,
    )
    for i, result in enumerate(results):
        if i % 3 == 1:
            assert isinstance(result, ResponseError)
            assert str(result) == f"refused {i}"
        else:
            assert result == [f"k{i}", str(i)]


async def test_a_full_redis_refuses_the_writes_of_a_batch_and_answers_its_reads(
    redis: Redis,
) -> None:
    echo, write, batch = await _echo_and_write(redis)
    old = await redis.config_get("maxmemory", "maxmemory-policy")
    await redis.config_set("maxmemory-policy", "noeviction")
    await redis.config_set("maxmemory", 1)
    try:
        results = await asyncio.gather(
            *(batch.call(write if i % 2 else echo, [f"k{i}"], [i]) for i in range(8)),
            return_exceptions=True,
        )
    finally:
        await redis.config_set("maxmemory", old["maxmemory"])
        await redis.config_set("maxmemory-policy", old["maxmemory-policy"])
    for i, result in enumerate(results):
        if i % 2:
            assert isinstance(result, OutOfMemoryError)
            assert await redis.exists(f"k{i}") == 0
        else:
            assert result == [f"k{i}", str(i)]


async def test_calls_refused_for_a_missing_script_are_sent_again_once_it_is_loaded(
    redis: Redis,
) -> None:
    echo, write = redis.register_script(ECHO), redis.register_script(WRITE)
    batch = Batcher(redis)
    for turn in range(2):  # a new Redis, then one flushed under a batcher that has run
        await redis.script_flush()
        results = await asyncio.gather(
            *(batch.call(write if i % 2 else echo, [f"{turn}:{i}"], [i]) for i in range(10))
        )
        assert [results[i] for i in range(0, 10, 2)] == [
            [f"{turn}:{i}", str(i)] for i in range(0, 10, 2)
        ]
        # Each write ran exactly once: the refused calls had not run before being sent again.
        assert [results[i] for i in range(1, 10, 2)] == [1] * 5
        for i in range(1, 10, 2):
            assert await redis.lrange(f"{turn}:{i}", 0, -1) == [str(i)]
    # A lone call, the script flushed under it.
    await redis.script_flush()
    assert await batch.call(echo, ["alone"], ["1"]) == ["alone", "1"]


async def _gathering(redis: Redis) -> tuple[Batcher, list[asyncio.Task[Any]]]:
    """Five calls made in one turn: the first goes at once, the second waits one turn gathering
    the other three behind it."""
    echo = redis.register_script(ECHO)
    await redis.script_load(ECHO)
    batch = Batcher(redis)
    tasks = [asyncio.create_task(batch.call(echo, [f"k{i}"], [i])) for i in range(5)]
    await asyncio.sleep(0)  # every task has made its call; the batch is not sent yet
    assert batch._joined is not None and len(batch._joined) == 3
    return batch, tasks


async def test_the_gathering_call_cancelled_before_sending_leaves_the_others_answered(
    redis: Redis,
) -> None:
    _, tasks = await _gathering(redis)
    tasks[1].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert [results[i] for i in (0, 2, 3, 4)] == [[f"k{i}", str(i)] for i in (0, 2, 3, 4)]


async def test_a_caller_cancelled_while_its_batch_is_out_leaves_the_others_answered(
    redis: Redis,
) -> None:
    batch, tasks = await _gathering(redis)
    await asyncio.sleep(0)  # the gathering call has handed the batch to its sender
    assert batch._joined is None and batch._sending
    tasks[3].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert [results[i] for i in (0, 1, 2, 4)] == [[f"k{i}", str(i)] for i in (0, 1, 2, 4)]
    # Nothing is left out or gathering: the next call goes at once.
    assert batch._out == 0 and batch._joined is None
    echo = redis.register_script(ECHO)
    assert await batch.call(echo, ["next"], ["x"]) == ["next", "x"]


async def test_an_unreachable_redis_fails_every_caller_and_the_batcher_recovers() -> None:
    gone = Redis(port=free_port(), decode_responses=True, socket_connect_timeout=1)
    try:
        echo = gone.register_script(ECHO)
        batch = batcher(gone)
        assert batcher(gone) is batch  # one per client
        results = await asyncio.gather(
            *(batch.call(echo, [f"k{i}"], [i]) for i in range(6)), return_exceptions=True
        )
        assert all(isinstance(r, RedisConnectionError) for r in results)
        assert batch._out == 0 and batch._joined is None and not batch._sending
    finally:
        await gone.aclose()


@pytest.mark.parametrize("many", [1, 7])
async def test_call_many_answers_in_order_with_errors_in_place(redis: Redis, many: int) -> None:
    echo, fail = redis.register_script(ECHO), redis.register_script(FAIL)

    calls = [Call(fail if i == many - 1 else echo, [f"k{i}"], [i]) for i in range(many)]
    answers = await Batcher(redis).call_many(calls)
    assert answers[:-1] == [[f"k{i}", str(i)] for i in range(many - 1)]
    assert isinstance(answers[-1], ResponseError)


async def _echo_and_write(redis: Redis) -> tuple[Any, Any, Batcher]:
    """The echo and write scripts, loaded in Redis, and a batcher on the same client."""
    echo, write = redis.register_script(ECHO), redis.register_script(WRITE)
    await redis.script_load(ECHO)
    await redis.script_load(WRITE)
    return echo, write, Batcher(redis)


def _retrying(redis_server: RedisServer) -> Redis:
    """A client that sends a command again on a new connection when its connection is lost."""
    return Redis.from_url(
        redis_server.url,
        decode_responses=True,
        retry=Retry(NoBackoff(), retries=3),
        retry_on_error=[RedisConnectionError],
    )


async def test_a_batch_whose_connection_is_lost_while_out_is_sent_again_and_answered(
    redis: Redis, redis_server: RedisServer
) -> None:
    retrying = _retrying(redis_server)
    try:
        write = retrying.register_script(WRITE)
        await retrying.script_load(WRITE)
        batch = batcher(retrying)
        # Writes wait while Redis is paused, so the calls are out, written and unanswered, when
        # their connections are killed; the client's retry sends them again on new ones. The
        # first call goes alone, the five made in the same turn as one pipeline behind it.
        await redis.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")
        calls = [asyncio.create_task(batch.call(write, [f"k{i}"], [i])) for i in range(6)]

        async def blocked() -> list[Any] | None:
            clients = await redis.client_list()
            out = [c for c in clients if c["cmd"] == "evalsha" and "b" in c["flags"]]
            return out if len(out) == 2 else None

        for client in await eventually(blocked, what="the alone call and the batch paused"):
            await redis.client_kill_filter(_id=client["id"])
        await redis.execute_command("CLIENT", "UNPAUSE")
        assert await asyncio.gather(*calls) == [1] * 6
        for i in range(6):
            assert await redis.lrange(f"k{i}", 0, -1) == [str(i)]
    finally:
        await redis.execute_command("CLIENT", "UNPAUSE")
        await retrying.aclose()


async def test_a_lone_call_cut_short_leaves_no_reply_for_the_next_lone_call(
    redis: Redis,
) -> None:
    echo, write, batch = await _echo_and_write(redis)
    assert await batch.call(echo, ["warm"], ["0"]) == ["warm", "0"]
    # The write is out alone (on the batcher's kept connection) and unanswered while Redis is
    # paused; its caller gives up. Its reply must never be read as the next call's answer.
    await redis.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")
    try:
        cut = asyncio.create_task(batch.call(write, ["cut"], ["1"]))

        async def blocked() -> bool:
            return any(c["cmd"] == "evalsha" for c in await redis.client_list())

        await eventually(blocked, what="the lone write paused in Redis")
        cut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cut
    finally:
        await redis.execute_command("CLIENT", "UNPAUSE")
    for i in range(3):
        assert await batch.call(echo, [f"after{i}"], [i]) == [f"after{i}", str(i)]
    assert batch._out == 0


async def test_lone_calls_carry_on_after_redis_closes_their_connection(
    redis_server: RedisServer, redis: Redis
) -> None:
    retrying = _retrying(redis_server)
    try:
        write = retrying.register_script(WRITE)
        batch = batcher(retrying)
        assert await batch.call(write, ["k"], ["a"]) == 1
        # Every client connection of the retrying client dropped between two calls (as a
        # restart or an idle timeout does): the next call reconnects and runs once.
        for client in await redis.client_list():
            if client["cmd"] == "evalsha":
                await redis.client_kill_filter(_id=client["id"])
        assert await batch.call(write, ["k"], ["b"]) == 2
        assert await redis.lrange("k", 0, -1) == ["a", "b"]
    finally:
        await retrying.aclose()
