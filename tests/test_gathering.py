"""`worker.gathering.Gatherer`: requests of concurrent tasks go in groups (one call for many), each
caller gets its own answer or its own failure, one request per key per group, and a cancelled
caller leaves the others be."""

from __future__ import annotations

import asyncio

import pytest

from worker.gathering import Gatherer


class Recorder:
    """A `run` that records the groups it was given; "bad" requests make it fail."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def run(self, requests: list[str]) -> list[str]:
        self.groups.append(list(requests))
        await self.release.wait()
        if any(r.startswith("bad") for r in requests):
            raise ValueError("bad request in the group")
        return [r.upper() for r in requests]


def by_name(request: str) -> str:
    return request.split("#")[0]


async def test_requests_made_together_go_as_one_group_each_with_its_answer() -> None:
    rec = Recorder()
    gather = Gatherer(rec.run, by_name)
    answers = await asyncio.gather(*(gather.call(name) for name in ("a", "b", "c")))
    assert answers == ["A", "B", "C"]
    assert rec.groups == [["a", "b", "c"]]


async def test_requests_made_while_a_group_is_out_go_together_next() -> None:
    rec = Recorder()
    gather = Gatherer(rec.run, by_name)
    rec.release.clear()
    first = asyncio.create_task(gather.call("a"))
    while not rec.groups:
        await asyncio.sleep(0)
    later = [asyncio.create_task(gather.call(n)) for n in ("b", "c")]
    await asyncio.sleep(0)
    assert rec.groups == [["a"]]  # b and c wait behind the group that is out
    rec.release.set()
    assert [await first, *[await t for t in later]] == ["A", "B", "C"]
    assert rec.groups == [["a"], ["b", "c"]]


async def test_a_key_goes_once_per_group() -> None:
    rec = Recorder()
    gather = Gatherer(rec.run, by_name)
    answers = await asyncio.gather(gather.call("a#1"), gather.call("b"), gather.call("a#2"))
    assert answers == ["A#1", "B", "A#2"]
    assert rec.groups == [["a#1", "b"], ["a#2"]]


async def test_one_requests_failure_is_its_own() -> None:
    rec = Recorder()
    gather = Gatherer(rec.run, by_name)
    results = await asyncio.gather(
        gather.call("a"), gather.call("bad"), gather.call("c"), return_exceptions=True
    )
    assert results[0] == "A" and results[2] == "C"
    assert isinstance(results[1], ValueError)
    assert rec.groups == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]


async def test_a_cancelled_caller_leaves_the_others_their_answers() -> None:
    rec = Recorder()
    gather = Gatherer(rec.run, by_name)
    rec.release.clear()
    tasks = [asyncio.create_task(gather.call(n)) for n in ("a", "b")]
    while not rec.groups:
        await asyncio.sleep(0)
    tasks[0].cancel()
    rec.release.set()
    assert await tasks[1] == "B"
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    assert await gather.call("c") == "C"  # and the gatherer goes on
