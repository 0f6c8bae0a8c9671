"""An applied LiveKit event is popped in the transaction that applies it (`PopAfter`), and on
its own when that could not be done: on a real Redis, the queue ends the same either way."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from worker.queue.schedule import Schedule, now_ms
from worker.rooms.livekit_events import PopAfter


async def a_claimed_room(redis: Redis, items: list[str]) -> tuple[Schedule, PopAfter]:
    schedule = Schedule(redis, "in-test")
    async with redis.pipeline(transaction=True) as pipe:
        for item in items:
            schedule.push(pipe, "room1", item, now_ms())
        await pipe.execute()
    (claim,) = await schedule.claim(10)
    return schedule, PopAfter(schedule, claim, items[0])


async def apply_with(redis: Redis, pop: PopAfter) -> None:
    """A transaction like the one applying an event: a write, then the pop."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set("applied", 1)
        pop.queue(pipe)
        pop.took(await pipe.execute(raise_on_error=False))


async def test_the_pop_in_the_transaction_answers_as_pop_next(redis: Redis) -> None:
    schedule, pop = await a_claimed_room(redis, ["e1", "e2"])
    await schedule.pop_next(pop.claim, "absent")  # loads pop.lua (pops nothing: not the head)
    await apply_with(redis, pop)
    assert pop.answer == (True, "e2")
    assert await pop.next() == (True, "e2")  # no second pop
    assert await redis.lrange(schedule.list_key("room1"), 0, -1) == ["e2"]
    assert await redis.get("applied") == "1"


async def test_the_last_event_popped_in_the_transaction_gives_the_room_back(
    redis: Redis,
) -> None:
    schedule, pop = await a_claimed_room(redis, ["e1"])
    await schedule.pop_next(pop.claim, "absent")
    await apply_with(redis, pop)
    assert pop.answer == (True, None)
    assert await redis.zscore(schedule.due_key, "room1") is None


async def test_a_script_not_loaded_fails_alone_and_the_event_is_popped_after(
    redis: Redis,
) -> None:
    schedule, pop = await a_claimed_room(redis, ["e1", "e2"])
    await redis.script_flush()
    await apply_with(redis, pop)
    assert await redis.get("applied") == "1"  # the transaction's writes went in
    assert pop.answer is None
    assert await redis.lrange(schedule.list_key("room1"), 0, -1) == ["e1", "e2"]
    assert await pop.next() == (True, "e2")  # popped on its own
    assert await redis.lrange(schedule.list_key("room1"), 0, -1) == ["e2"]


async def test_any_other_failure_in_the_transaction_is_raised(redis: Redis) -> None:
    _, pop = await a_claimed_room(redis, ["e1"])
    await redis.set("a-string", "x")
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset("a-string", "f", "v")  # WRONGTYPE
        pop.queue(pipe)
        results = await pipe.execute(raise_on_error=False)
    with pytest.raises(ResponseError):
        pop.took(results)
    assert pop.answer is None
