"""The log lines' timestamp: structlog's ISO UTC text, from a stamper that formats once a second."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest
import structlog

from worker.logs import UtcStamper

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z")


def _stamp(stamper: object) -> str:
    event: dict[str, object] = {}
    stamper(None, "info", event)  # type: ignore[operator]
    return str(event["timestamp"])


def test_the_timestamp_is_spelled_as_structlogs_and_is_the_time_now() -> None:
    ours, theirs = UtcStamper(), structlog.processors.TimeStamper(fmt="iso", utc=True)
    for _ in range(2000):  # long enough to cross a second now and then
        before = time.time()
        text = _stamp(ours)
        after = time.time()
        assert ISO_UTC.fullmatch(text), text
        assert ISO_UTC.fullmatch(_stamp(theirs))
        assert before - 1e-6 <= datetime.fromisoformat(text).timestamp() <= after + 1e-6


@pytest.mark.parametrize("now", [1_800_000_000.0, 1_800_000_000.5, 1_800_000_001.25, 1.0])
def test_each_instant_is_written_as_isoformat_writes_it(
    now: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    stamper = UtcStamper()
    _stamp(stamper)  # a second formatted before: the one below must not reuse it
    monkeypatch.setattr(time, "time", lambda: now)
    expected = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
    assert _stamp(stamper) == expected
