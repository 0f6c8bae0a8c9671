"""Requests that concurrent tasks make while one is out, gathered into one call (one round trip).

A request made while none is out goes at the end of the event loop's turn, with those the other
tasks made in the same turn (tasks woken together, by one answer, make theirs together), so a
lone caller waits for nothing but that turn; those made while a group is out gather behind it
and go together next. Each request has a key, and a group
holds one request per key (a second one with the same key waits for the next group, so it sees
what the first one did). Each caller gets its own answer; when a group of several fails, each of
its requests is tried again alone, so one request's failure is its own; a cancelled caller leaves
the others be (a group runs as a task of its own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

R = TypeVar("R")
A = TypeVar("A")


class Gatherer(Generic[R, A]):
    """Gathers the requests of concurrent tasks for `run` (requests in, their answers out, in
    order); `key` names what a request is about."""

    def __init__(
        self, run: Callable[[list[R]], Awaitable[list[A]]], key: Callable[[R], Hashable]
    ) -> None:
        self._run_many = run
        self._key = key
        self._waiting: list[tuple[R, asyncio.Future[A]]] = []
        self._out = False  # a group is out, or about to go

    async def call(self, request: R) -> A:
        """`request`'s answer, from a group it went in."""
        answer: asyncio.Future[A] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, answer))
        if not self._out:
            self._out = True
            asyncio.get_running_loop().call_soon(self._send)
        return await answer

    def _send(self) -> None:
        keys: set[Hashable] = set()
        group: list[tuple[R, asyncio.Future[A]]] = []
        waiting: list[tuple[R, asyncio.Future[A]]] = []
        for request, answer in self._waiting:
            if answer.done():
                continue  # its caller was cancelled before it went
            key = self._key(request)
            (waiting if key in keys else group).append((request, answer))
            keys.add(key)
        self._waiting = waiting
        if not group:
            self._out = False
            return
        self._out = True
        asyncio.create_task(self._run(group)).add_done_callback(self._sent)

    def _sent(self, _task: asyncio.Task[None]) -> None:
        if self._waiting:
            self._send()
        else:
            self._out = False

    async def _run(self, group: list[tuple[R, asyncio.Future[A]]]) -> None:
        try:
            try:
                answers = await self._run_many([request for request, _ in group])
            except Exception:
                if len(group) == 1:
                    raise
                for one in group:  # one request's failure is its own
                    await self._run([one])
                return
        except Exception as exc:
            for _, answer in group:
                if not answer.done():
                    answer.set_exception(exc)
            return
        except BaseException:  # cancelled (shutting down): so are the callers' waits
            for _, answer in group:
                answer.cancel()
            raise
        for (_, answer), value in zip(group, answers, strict=True):
            if not answer.done():
                answer.set_result(value)
