"""Create jobs left without an arq job, found by reconciliation and queued again.

A job's arq job is written with its claim, in one script, and ends only after the job's outcome
is recorded, so normally no job can be left behind. Redis losing acknowledged writes can do it:
after a failover without `ROOMKEEPER_REDIS_MIN_REPLICAS` (or a restart without AOF) a job's
outcome may be gone while the end of its arq job is not. Such a job would stay pending for good,
and its room could never be created again (each create would find it pending). Every
reconciliation looks for open jobs older than the job timeout that no queued arq job carries, and
queues them again: each step of a create is safe to run twice.
"""

from __future__ import annotations

import time

from worker import keys
from worker.arqueue import queued_args
from worker.deps import Deps
from worker.logs import get_logger
from worker.metrics import JOBS_RECOVERED
from worker.rooms.jobs import CREATE_ROOMS, enqueue_batches

log = get_logger("roomkeeper.orphans")

MOST_PER_RUN = 1000  # candidates looked at per reconciliation; the next run takes the rest


async def requeue_orphans(deps: Deps) -> int:
    """Queue again the open create jobs no arq job carries; returns how many."""
    now_ms = int(time.time() * 1000)
    cutoff = now_ms - int(deps.settings.job_timeout * 1000)
    candidates = await deps.redis.zrangebyscore(
        keys.QUEUED_JOBS, "-inf", cutoff, start=0, num=MOST_PER_RUN
    )
    if not candidates:
        return 0
    carried = {job_id for args in await queued_args(deps.arq, CREATE_ROOMS) for job_id in args[0]}
    orphans = [job_id for job_id in candidates if job_id not in carried]
    if not orphans:
        return 0
    # A job that ended between the two reads is queued for nothing: its run skips it.
    await enqueue_batches(deps, orphans, origin=f"orphans:{now_ms}")
    JOBS_RECOVERED.inc(len(orphans))
    log.warning(
        "create jobs without their arq job (Redis lost writes) queued again", jobs=len(orphans)
    )
    return len(orphans)
