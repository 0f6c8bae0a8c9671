"""The SSRF guard end to end (README, Webhooks): a real `roomkeeper worker` without the loopback
allow-list refuses every internal target at connect time, at once, with the reason.

It runs in a network namespace of its own (see `tests.support.delivery`), so a failing guard
could never send a packet to a private address outside this machine.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.delivery import run_ssrf_probe

pytestmark = pytest.mark.slow  # real processes or injected faults


@pytest.fixture(scope="module")
def probe() -> dict[str, Any]:
    """One probe run serves every assertion below."""
    return run_ssrf_probe()


async def test_every_internal_target_is_dead_at_once_with_the_guards_reason(
    probe: dict[str, Any],
) -> None:
    failures = {}
    for url, rec in probe["table"].items():
        want = probe["expected"][url]
        log = rec["attempt_log"]
        ok = (
            rec.get("state") == "dead"
            and len(log) == 1  # no retries
            and "status" not in log[0]  # refused before any HTTP exchange
            and log[0]["error"].startswith("refused by the SSRF guard: ")
            and want in log[0]["error"]
            and rec.get("reason") == log[0]["error"]
        )
        if not ok:
            failures[url] = (want, rec.get("state"), rec.get("reason"), log)
    assert not failures, failures
    await asyncio.sleep(0)


def test_no_refused_request_reached_the_listening_receiver(probe: dict[str, Any]) -> None:
    # The receiver listens on every local address of the namespace; only the controls got in.
    assert sorted(probe["received"]) == ["/control", "/control-by-name"]


def test_the_allow_list_and_the_fake_dns_path_work_for_the_controls(
    probe: dict[str, Any],
) -> None:
    # Without this, "everything refused" could mean a broken probe rather than a working guard.
    assert {rec["state"] for rec in probe["controls"].values()} == {"delivered"}
    assert "allowed.example.test" in probe["dns_queries"]
    assert "internal.example.test" in probe["dns_queries"]
