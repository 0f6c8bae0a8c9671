"""The loop that works a `Schedule`: claim what is due, run each claim as a task, sleep until due.

Used for timers, LiveKit's inbound events and webhook deliveries. It sleeps on the schedule's wake
list until the next member falls due (or a producer wakes it), so work starts within milliseconds
instead of a poll interval. A consumer with a look-ahead (timers) claims members shortly before
they fall due and starts each at its due time on a local timer, so the wake-up, the claim's round
trip and a busy event loop's queue are behind it before the deadline comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from worker.logs import get_logger
from worker.queue.schedule import Claim, Schedule, now_ms

log = get_logger("roomkeeper.consumer")

Handler = Callable[[Claim], Awaitable[None]]


async def run_consumer(
    schedule: Schedule,
    handler: Handler,
    *,
    waiter: Redis,
    stop: asyncio.Event,
    concurrency: int,
    idle_max: float = 1.0,
    grace: float = 10.0,
    lookahead_ms: int = 0,
    running: int | None = None,
) -> None:
    """Work `schedule` until `stop` is set; then let running claims finish within `grace` s.

    With `lookahead_ms`, members due that much ahead are claimed
    (up to `concurrency` held) and each is handled at its due time, never before; at most
    `running` handlers run at once.
    """
    tasks: set[asyncio.Task[None]] = set()
    slots = asyncio.Semaphore(running or concurrency)

    async def guarded(claim: Claim) -> None:
        try:
            await _until_ms(claim.due_ms)
            async with slots:
                await handler(claim)
        except asyncio.CancelledError:
            # Hand the member straight back rather than leaving it to the lease's expiry (due
            # when it was due: a member claimed ahead is not handed out early).
            with contextlib.suppress(Exception):
                await asyncio.shield(schedule.release(claim, max(now_ms(), claim.due_ms)))
            raise
        except RedisConnectionError as exc:
            # The lease runs out and the member is retried: nothing is lost.
            log.warning("redis unavailable", schedule=schedule.name, error=str(exc))
        except Exception:
            log.exception("claim failed", schedule=schedule.name, member=claim.member)

    while not stop.is_set():
        free = concurrency - len(tasks)
        claims: list[Claim] = []
        if free > 0:
            try:
                # A consumer claiming ahead (timers) keeps every wake-up: one claiming what is
                # due now answers those pushed before its claim when it takes everything due.
                claims = await schedule.claim(
                    free, now_ms() + lookahead_ms, answer_wakes=not lookahead_ms
                )
            except RedisConnectionError as exc:
                log.warning("redis unavailable", schedule=schedule.name, error=str(exc))
                await _pause(stop, 1.0)
                continue
            except Exception:
                log.exception("claim failed", schedule=schedule.name)
                await _pause(stop, 1.0)
                continue
        for claim in claims:
            task = asyncio.create_task(guarded(claim))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if claims and len(claims) < free:
            continue  # there may be nothing more due; loop once to find out
        if free <= 0 or claims:
            await asyncio.wait(tasks, timeout=idle_max, return_when=asyncio.FIRST_COMPLETED)
            continue
        try:
            nxt = await schedule.next_due_ms()
            ahead = None if nxt is None else (nxt - lookahead_ms - now_ms()) / 1000
            timeout = idle_max if ahead is None else min(idle_max, ahead)
            if timeout > 0:
                await _until_stopped(schedule.wait(waiter, timeout), stop)
        except RedisConnectionError as exc:
            log.warning("redis unavailable", schedule=schedule.name, error=str(exc))
            await _pause(stop, 1.0)
        except Exception:
            log.exception("wait failed", schedule=schedule.name)
            await _pause(stop, 1.0)

    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _until_stopped(wait: Awaitable[None], stop: asyncio.Event) -> None:
    """Await `wait`, cut short by `stop`: shutting down does not sit out a blocking pop.

    The cut-off pop's connection is dropped by redis-py; the waiter is private to this consumer
    and closed at shutdown anyway.
    """
    waiting = asyncio.ensure_future(wait)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiting, stopping):
            task.cancel()
        await asyncio.gather(waiting, stopping, return_exceptions=True)
    failure = None if waiting.cancelled() else waiting.exception()
    if failure is not None:
        raise failure  # Redis errors reach the loop's handlers as before


async def _until_ms(due_ms: int) -> None:
    """Sleep until the wall clock reaches `due_ms`: never before it, whatever the loop's own
    (monotonic) clock says, so a second short sleep covers any difference."""
    for _ in range(3):
        left = due_ms / 1000 - time.time()
        if left <= 0:
            return
        await asyncio.sleep(left + 0.0005)
    # The wall clock was stepped back meanwhile: due at the new clock's reading of the time.
    await asyncio.sleep(max(0.0, due_ms / 1000 - time.time()))


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
