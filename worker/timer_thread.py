"""The room timers' own thread and event loop, so a due timer never waits behind the main loop.

One worker process runs its deliveries, LiveKit's inbound events and the create jobs on one event
loop; at thousands of rooms its queue of ready steps is long, and a timer's steps would wait their
turn in it. The timer consumer runs here instead, with its own loop, Redis and LiveKit clients
(its own `Deps`): between two of its steps it waits for the interpreter at most a switch interval
(`SWITCH_INTERVAL_S`), not for the main loop's queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading

from worker.connections import redis_client
from worker.deps import open_deps
from worker.logs import get_logger
from worker.loop import run as run_loop
from worker.queue.consumer import run_consumer
from worker.rooms.ending import on_timer
from worker.settings import Settings

log = get_logger("roomkeeper.timers")

# Timers claimed up to this far ahead of their deadline, at most HELD of them held (waiting for
# their deadline or firing), at most RUNNING firing at once. A worker killed while holding them
# leaves them to the lease's end, as it does the ones it was firing.
LOOKAHEAD_MS = 1000
IDLE_MAX_S = 1.0  # the longest the consumer sleeps without looking (timers.WAKE_WITHIN_MS)
HELD = 1024
RUNNING = 256
PARENT_CHECK_S = 0.25
# How long a thread waiting for the interpreter waits at most while another runs Python code.
# CPython's 5 ms is paid at every step of a timer's end (each Redis reply and the DeleteRoom
# answer wake this thread, which then waits for the busy main thread); at 1 ms, bench.timers'
# p99 lateness went from 211 to 155 ms at 10,000 rooms. It only matters while both threads want
# to run: an idle thread waits in the kernel, not for the interpreter.
SWITCH_INTERVAL_S = 0.001


class TimerThread:
    """The timer consumer on a thread of its own; `start` it, `stop` it from the main loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._parent: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()  # `stop` was called, maybe before the loop existed
        self._thread = threading.Thread(target=self._run, name="roomkeeper-timers", daemon=True)

    async def start(self) -> None:
        """Start the thread; returns once its clients are open (or raises why they are not)."""
        self._parent = asyncio.get_running_loop()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._thread.start()
        await asyncio.wrap_future(self._started)

    async def stop(self) -> None:
        """Stop taking timers; the ones firing get the shutdown grace; wait for the thread."""
        self._stopping.set()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        try:
            run_loop(self._main(), self.settings.event_loop)
        except BaseException as exc:
            try:
                self._started.set_exception(exc)
            except concurrent.futures.InvalidStateError:  # started, or nobody waits any more
                log.exception("timer thread failed")

    async def _main(self) -> None:
        settings = self.settings
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        deps = await open_deps(settings)
        waiter = redis_client(settings)
        watch = asyncio.create_task(self._watch_parent())
        try:
            try:
                self._started.set_result(None)
            except concurrent.futures.InvalidStateError:
                return  # the startup waiting for this was cut short: no worker to serve
            await run_consumer(
                deps.timers,
                lambda c: on_timer(deps, c),
                waiter=waiter,
                stop=self._stop,
                concurrency=HELD,
                running=RUNNING,
                lookahead_ms=LOOKAHEAD_MS,
                idle_max=IDLE_MAX_S,
                grace=settings.shutdown_grace,
            )
        finally:
            watch.cancel()
            await waiter.aclose()
            await deps.aclose()

    async def _watch_parent(self) -> None:
        """Stop when `stop` was called early or the loop that started the thread is gone (its
        process went on without a shutdown): the timers are not left to a thread nobody runs."""
        assert self._stop is not None
        while not self._stop.is_set():
            parent = self._parent
            if self._stopping.is_set() or parent is None or not parent.is_running():
                self._stop.set()
                return
            await asyncio.sleep(PARENT_CHECK_S)
