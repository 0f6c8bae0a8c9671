"""Room timers on the durable `timers` schedule: names in, meaning out.

A timer member spells what it is for and its deadline, `kind|room_id|sid|deadline_ms`, so the
handler can re-check the room's state when it fires (timers are never cancelled, only found moot)
and measure its own lateness. `reconcile` is a singleton member that re-arms itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker import keys
from worker.queue.schedule import Schedule, now_ms

SCHEDULE_NAME = keys.TIMERS
RECONCILE = "reconcile"
# A timer due at least this far ahead is claimed in time without waking the timer consumer: it
# looks again at least once a second (`timer_thread.IDLE_MAX_S`) for what falls due within its
# look-ahead (`timer_thread.LOOKAHEAD_MS`); the rest is room for clocks that differ between
# processes. A wake-up costs the consumer three round trips, and a bulk arms thousands of timers
# minutes ahead.
WAKE_WITHIN_MS = 5000


@dataclass(frozen=True)
class Timer:
    """One room timer: `empty`, `duration` or `warn:<seconds before the end>`."""

    kind: str
    room_id: str
    sid: str
    deadline_ms: int

    @property
    def member(self) -> str:
        """The schedule member naming this timer."""
        return f"{self.kind}|{self.room_id}|{self.sid}|{self.deadline_ms}"

    @classmethod
    def parse(cls, member: str) -> Timer | None:
        """The timer a member names (None for singletons such as `reconcile`)."""
        parts = member.split("|")
        if len(parts) != 4:
            return None
        kind, room_id, sid, deadline = parts
        return cls(kind, room_id, sid, int(deadline))


def room_timers(
    room_id: str,
    sid: str,
    *,
    creation_ms: int,
    empty_timeout: int,
    duration_min: int,
    warnings: tuple[int, ...],
) -> list[Timer]:
    """The timers a new session needs: empty, duration and the warnings before the end.

    `creation_ms` is LiveKit's `creation_time_ms`, so no deadline falls before its time.
    """
    start_ms = creation_ms
    timers = [Timer("empty", room_id, sid, start_ms + empty_timeout * 1000)]
    if duration_min > 0:
        end_ms = start_ms + duration_min * 60_000
        timers.append(Timer("duration", room_id, sid, end_ms))
        duration_s = duration_min * 60
        # A warning longer than the whole duration is due before the room exists: it goes out at
        # once, saying how long is actually left, rather than never.
        offsets = {min(w, duration_s) for w in warnings if w > 0}
        timers.extend(
            Timer(f"warn:{w}", room_id, sid, end_ms - w * 1000)
            for w in sorted(offsets, reverse=True)
        )
    return timers


def needs_wake(due_ms: int | None, now: int | None = None) -> bool:
    """Whether timers first due at `due_ms` (None: no timers) must wake the timer consumer."""
    return due_ms is not None and due_ms < (now_ms() if now is None else now) + WAKE_WITHIN_MS


def arm(pipe: Any, schedule: Schedule, timers: list[Timer], *, wake: bool = True) -> None:
    """Add timers to a pipeline (with the state change that needs them)."""
    for timer in timers:
        schedule.add(pipe, timer.member, timer.deadline_ms, wake=False)
    if wake and timers:
        schedule.wake(pipe)


def disarm(pipe: Any, schedule: Schedule, timers: list[Timer]) -> None:
    """Drop timers that can no longer matter (the session ended)."""
    for timer in timers:
        schedule.remove(pipe, timer.member)
