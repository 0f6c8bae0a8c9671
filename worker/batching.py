"""Coalescing of Lua script calls: those that concurrent tasks make in one turn of the event loop
go to Redis as one pipeline (one write and one read for all of them, not one each).

Each call is still its own script, run atomically on its own, so each caller gets exactly the
answer it would have had alone, a refusal (out of memory, an error raised by the script)
included, as that call's own exception. Scripts are sent by SHA alone (no `SCRIPT EXISTS` trip
per pipeline); the calls a Redis without the script refused (new, restarted, flushed) ran not at
all, so they are sent again once it is loaded. A caller cancelled while its batch is out leaves
the others untouched: the batch is sent by a task of its own.

A call made while none of the client's is out goes at once, as a plain EVALSHA (a lone caller,
such as one strictly ordered queue, waits for nobody); the calls made while it is out gather
behind it, one batch per turn of the loop. Since at most one lone call is out at a time, lone
calls share one connection the batcher keeps from the client's pool (`Lane`): written and read
directly, without the pool's checkout, health check and release around every call, which cost
about as much CPU as the exchange itself. It is retried on connection loss as the client's retry
policy says, and closed when a call is cut short, so no reply is ever left unread on it.
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


class Lane:
    """A connection of the client's pool kept for one caller at a time: one EVALSHA written,
    its reply read, no checkout around it (the pool's connection kind, so TLS, AUTH, Sentinel
    and the retry policy are the client's own)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._conn: AbstractConnection | None = None
        self.busy = False  # a call is out on it (the next caller takes a pooled connection)

    async def call(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """One script call's answer, or the error Redis answered it with (returned); loaded and
        sent again on NOSCRIPT. A failure to reach Redis at all raises. Never while `busy`."""
        assert not self.busy
        self.busy = True
        try:
            answer = await self._exchange(script.sha, keys, args)
            if isinstance(answer, NoScriptError):
                script.sha = await self.redis.script_load(script.script)
                answer = await self._exchange(script.sha, keys, args)
        finally:
            self.busy = False
        return answer

    async def _exchange(self, sha: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        conn = self._conn
        if conn is None:
            # Taken from the pool once and never given back: the pool still closes it with
            # the client (it counts as in use), and it reconnects on its next call.
            conn = self._conn = await self.redis.connection_pool.get_connection()

        async def exchange() -> Any:
            await conn.send_packed_command(
                conn.pack_command("EVALSHA", sha, len(keys), *keys, *args)
            )
            try:
                return await conn.read_response()
            except ResponseError as exc:  # the call's own refusal; the connection is fine
                return exc

        try:
            return await conn.retry.call_with_retry(exchange, lambda error: _drop(conn, error))
        except BaseException:
            # Cut short (cancelled, or failed for good) between writing and reading: its reply
            # may still come, so the connection is closed rather than read by the next call.
            await conn.disconnect(nowait=True)
            raise


class Batcher:
    """The script calls made on one client in one turn of the event loop, sent together."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._lane = Lane(redis)  # the lone calls', one at a time
        # The calls that joined the batch gathering in this turn (None: none is gathering).
        self._joined: list[tuple[list[Call], asyncio.Future[list[Any]]]] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._out = 0  # calls and batches sent and not yet answered

    async def call(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run one script call; its answer, or the error Redis gave it, raised."""
        if self._joined is None and not self._out and not self._lane.busy:
            # Alone (see `call_many`): straight to the lane, no more frames than needed.
            self._out += 1
            try:
                answer = await self._lane.call(script, keys, args)
            finally:
                self._out -= 1
        else:
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
            if len(calls) == 1 and not self._lane.busy:
                return [await self._lane.call(*calls[0])]
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
