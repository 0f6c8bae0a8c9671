"""Coalescing of Lua script calls: those that concurrent tasks make in one turn of the event loop
go to Redis as one pipeline (one write and one read for all of them, not one each).

Each call is still its own script, run atomically on its own, so each caller gets exactly the
answer it would have had alone, a refusal (out of memory, an error raised by the script)
included, as that call's own exception. Scripts are sent by SHA alone (no `SCRIPT EXISTS` trip
per pipeline); the calls a Redis without the script refused (new, restarted, flushed) ran not at
all, so they are sent again once it is loaded. A caller cancelled while its batch is out leaves
the others untouched: the batch is sent by a task of its own.

A call made while none of the client's is out goes at once, as the plain EVALSHA it would have
been without any of this (a lone caller, such as one strictly ordered queue, pays nothing); the
calls made while it is out gather behind it, one batch per turn of the loop.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any, NamedTuple

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError


class Call(NamedTuple):
    """One script call: the registered script (its SHA and text), its KEYS and its ARGV."""

    script: AsyncScript
    keys: Sequence[Any]
    args: Sequence[Any]


async def run(redis: Redis, calls: Sequence[Call], *, reload: bool = True) -> list[Any]:
    """The calls in one pipeline (a single one as a plain EVALSHA); each one's answer, or the
    error Redis answered it with in its place. A failure to reach Redis at all raises."""
    if len(calls) == 1 and reload:
        # redis-py's own Script call: EVALSHA, loaded and sent again on NOSCRIPT.
        script, keys, args = calls[0]
        try:
            return [await script(keys=keys, args=args, client=redis)]
        except ResponseError as exc:
            return [exc]
    answers = await _pipelined(redis, calls)
    # The pipeline's calls that met a Redis not holding their script ran not at all.
    missing = [i for i, a in enumerate(answers) if isinstance(a, NoScriptError)]
    if missing and reload:
        for script in {id(calls[i].script): calls[i].script for i in missing}.values():
            script.sha = await redis.script_load(script.script)
        again = await run(redis, [calls[i] for i in missing], reload=False)
        for i, answer in zip(missing, again, strict=True):
            answers[i] = answer
    return answers


async def _pipelined(redis: Redis, calls: Sequence[Call]) -> list[Any]:
    """What redis-py's `Pipeline.execute(raise_on_error=False)` does for these calls (one
    pooled connection, one write, the replies read in order, retried whole on connection loss
    as the client's retry policy says), without its per-command bookkeeping, which cost a
    third of the client's CPU per call."""
    pool = redis.connection_pool
    conn = await pool.get_connection()
    try:
        answers: list[Any] = await conn.retry.call_with_retry(
            lambda: _exchange(conn, calls), lambda error: _drop(conn, error)
        )
    finally:
        await pool.release(conn)
    return answers


async def _exchange(conn: AbstractConnection, calls: Sequence[Call]) -> list[Any]:
    await conn.send_packed_command(
        conn.pack_commands([("EVALSHA", s.sha, len(k), *k, *a) for s, k, a in calls])
    )
    answers: list[Any] = []
    for _ in calls:
        try:
            answers.append(await conn.read_response())
        except ResponseError as exc:  # this call's own refusal; the connection is fine
            answers.append(exc)
    return answers


async def _drop(conn: AbstractConnection, error: Exception) -> None:
    """A connection lost mid-batch is closed; the batch is retried only for the errors the
    client retries any command on."""
    await conn.disconnect()
    if conn.retry_on_error is None or not isinstance(error, tuple(conn.retry_on_error)):
        raise error


class Batcher:
    """The script calls made on one client in one turn of the event loop, sent together."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        # The calls that joined the batch gathering in this turn (None: none is gathering).
        self._joined: list[tuple[list[Call], asyncio.Future[list[Any]]]] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._out = 0  # calls and batches sent and not yet answered

    async def call(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run one script call; its answer, or the error Redis gave it, raised."""
        if self._joined is None and not self._out:
            # Alone (see `call_many`): the plain call, no more frames than a Script's own.
            self._out += 1
            try:
                return await script(keys=keys, args=args, client=self.redis)
            finally:
                self._out -= 1
        (answer,) = await self.call_many([Call(script, keys, args)])
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def call_many(self, calls: list[Call]) -> list[Any]:
        """Run the calls (each its own script); their answers in order, an error Redis gave
        one in its place. A failure to reach Redis at all raises."""
        if self._joined is not None:
            answer: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            self._joined.append((calls, answer))
            return await answer
        if not self._out:
            # Nothing of this client's is out, so nothing holds Redis up: this call goes now as
            # it would have alone (a lone caller, one strictly ordered queue, pays nothing);
            # the calls made while it is out gather behind it.
            return await self._run(calls)
        # The first call of this turn while others are out: the calls made in it join while it
        # waits one turn (it resumes after the tasks already ready in this one).
        joined: list[tuple[list[Call], asyncio.Future[list[Any]]]] = []
        self._joined = joined
        try:
            await asyncio.sleep(0)
        except BaseException:
            self._joined = None
            if joined:
                self._send(joined)
            raise
        self._joined = None
        if not joined:
            return await self._run(calls)
        mine: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._send([(calls, mine), *joined])
        return await mine

    async def _run(self, calls: list[Call]) -> list[Any]:
        self._out += 1
        try:
            return await run(self.redis, calls)
        finally:
            self._out -= 1

    def _send(self, batch: list[tuple[list[Call], asyncio.Future[list[Any]]]]) -> None:
        """Send `batch` from a task of its own, so no caller's cancellation stops it."""
        task = asyncio.get_running_loop().create_task(self._deliver(batch))
        self._sending.add(task)
        self._out += 1
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._out -= 1

    async def _deliver(self, batch: list[tuple[list[Call], asyncio.Future[list[Any]]]]) -> None:
        try:
            answers = await run(self.redis, [call for calls, _ in batch for call in calls])
        except Exception as exc:
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            return
        except BaseException:
            for _, answer in batch:
                answer.cancel()
            raise
        at = 0
        for calls, answer in batch:
            if not answer.done():  # its caller may have been cancelled meanwhile
                answer.set_result(answers[at : at + len(calls)])
            at += len(calls)


_BATCHERS: weakref.WeakKeyDictionary[Redis, Batcher] = weakref.WeakKeyDictionary()


def batcher(redis: Redis) -> Batcher:
    """The one `Batcher` of `redis` (calls batch together only on the same client)."""
    found = _BATCHERS.get(redis)
    if found is None:
        found = _BATCHERS[redis] = Batcher(redis)
    return found
