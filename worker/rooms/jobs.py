"""arq job functions: thin orchestration over the plain async code in `worker.rooms.create`.

One arq job carries a batch of create jobs (`create_batch_size` rooms), so a bulk is not bound by
arq's per-job overhead. Every arq job id is derived from what it carries, so a job enqueued twice
is one job. The first arq job of a create is written with its claim (`worker.rooms.submit`);
this module queues the later ones (rooms LiveKit could not take yet).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections import defaultdict
from typing import Any

import structlog

from worker.arqueue import RerunJob
from worker.deps import Deps
from worker.logs import get_logger
from worker.metrics import JOB_SECONDS, JOBS
from worker.rooms.create import RetryIn, create_batch
from worker.settings import Settings

log = get_logger("roomkeeper.jobs")

CREATE_ROOMS = "create_rooms"
# Rooms handed back because the rate limit had no slot soon enough carry assorted waits; grouping
# them to this granularity keeps that to a few deferred jobs instead of one per room.
DELAY_STEP_S = 0.5
RERUN_DELAY_S = 1.0


async def enqueue_create(
    deps: Deps, job_ids: list[str], *, defer_by: float | None = None, arq_job_id: str | None = None
) -> None:
    """Queue one arq job creating the rooms of `job_ids`."""
    await deps.arq.enqueue_job(
        CREATE_ROOMS,
        job_ids,
        _job_id=arq_job_id or batch_job_id("create", job_ids),
        _defer_by=defer_by,
    )


def batch_job_id(origin: str, job_ids: list[str]) -> str:
    """The arq job id of a batch: the same origin and rooms always give the same id."""
    digest = hashlib.sha256("|".join([origin, *sorted(job_ids)]).encode()).hexdigest()
    return f"create:{digest[:32]}"


async def enqueue_batches(
    deps: Deps, job_ids: list[str], *, origin: str = "bulk", defer_by: float | None = None
) -> list[str]:
    """Queue `job_ids` as arq jobs of `create_batch_size` rooms; returns the arq job ids."""
    size = deps.settings.create_batch_size
    batches = [job_ids[i : i + size] for i in range(0, len(job_ids), size)]
    arq_ids = [batch_job_id(origin, batch) for batch in batches]
    if not batches:
        return []
    await asyncio.gather(
        *(
            enqueue_create(deps, batch, defer_by=defer_by, arq_job_id=arq_id)
            for batch, arq_id in zip(batches, arq_ids, strict=True)
        )
    )
    return arq_ids


def hard_limit(settings: Settings) -> float:
    """Seconds after which a create job gives up and is run again (before arq's timeout).

    arq fails a job that overruns its timeout and does not run it again, which would strand its
    rooms; so the job stops itself first and asks arq for a re-run (`Retry`).
    """
    return settings.job_timeout * 0.9


def time_budget(settings: Settings) -> float:
    """Seconds a create job may spend starting rooms, so that it normally ends in time.

    A LiveKit call started at the budget's end still has its own timeout and a margin to finish
    before the hard limit; rooms without a slot by then go to a fresh job instead.
    """
    hard = hard_limit(settings)
    return max(hard * 0.25, hard - settings.livekit_timeout - 2)


async def _requeue(deps: Deps, arq_job: str, retries: list[RetryIn]) -> None:
    """Queue the rooms to retry as deferred batches, one per delay."""
    by_delay: dict[float, list[str]] = defaultdict(list)
    for retry in retries:
        step = math.ceil(retry.delay / DELAY_STEP_S) * DELAY_STEP_S if retry.delay else 0.0
        delay = retry.delay if retry.delay in deps.settings.create_retry_schedule else step
        by_delay[delay].append(retry.job_id)
    for delay, ids in by_delay.items():
        # Derived from this job's id: a re-run of this job re-queues the same arq jobs.
        await enqueue_batches(deps, ids, origin=f"{arq_job}>{delay}", defer_by=delay or None)


def _slots(ctx: dict[str, Any], settings: Settings) -> asyncio.Semaphore:
    """This process's bound on LiveKit creates in flight, shared by all its running jobs."""
    slots: asyncio.Semaphore | None = ctx.get("create_slots")
    if slots is None:
        slots = ctx["create_slots"] = asyncio.Semaphore(settings.create_concurrency)
    return slots


async def create_rooms(ctx: dict[str, Any], job_ids: list[str]) -> int:
    """Create a batch of rooms; rooms LiveKit could not take yet go back as deferred batches."""
    deps: Deps = ctx["deps"]
    settings = deps.settings
    started = time.perf_counter()
    arq_job = str(ctx.get("job_id") or "")
    with structlog.contextvars.bound_contextvars(arq_job=arq_job, rooms=len(job_ids)):
        try:
            async with asyncio.timeout(hard_limit(settings)):
                retries = await create_batch(
                    deps,
                    job_ids,
                    slots=_slots(ctx, settings),
                    deadline=asyncio.get_running_loop().time() + time_budget(settings),
                )
                await _requeue(deps, arq_job, retries)
        except Exception as exc:
            # Out of time, or Redis went away: every step is idempotent, so the whole batch
            # simply runs again (finished rooms are skipped) rather than being stranded.
            JOBS.labels(CREATE_ROOMS, "again").inc()
            log.warning("create job will run again", error=repr(exc), exc_info=exc)
            raise RerunJob(defer=RERUN_DELAY_S) from exc
        elapsed = time.perf_counter() - started
        JOB_SECONDS.labels(CREATE_ROOMS).observe(elapsed)
        JOBS.labels(CREATE_ROOMS, "retrying" if retries else "ok").inc()
        log.info(
            "job done",
            function=CREATE_ROOMS,
            retrying=len(retries),
            duration_ms=round(elapsed * 1000, 1),
        )
    return len(job_ids) - len(retries)
