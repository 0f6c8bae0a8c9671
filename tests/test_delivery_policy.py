"""The pure parts of delivery (README, Webhooks): the retry decision, jitter, Retry-After, the SSRF
table, ids and log-safe URLs. One rule per test."""

from __future__ import annotations

import random
import time
from email.utils import formatdate

import pytest

from worker.settings import DEFAULT_RETRY_SCHEDULE
from worker.webhooks.attempt import (
    AttemptResult,
    Delivered,
    Failed,
    Gone,
    RetryLater,
    decide,
    jittered,
    parse_retry_after,
)
from worker.webhooks.delivery import queue_id
from worker.webhooks.engine import ID_PATTERN, id_floor, new_delivery_id
from worker.webhooks.heads import public_url
from worker.webhooks.netguard import blocked_reason, parse_cidrs

SCHEDULE = DEFAULT_RETRY_SCHEDULE  # 0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h


def answer(status: int, retry_after: float | None = None) -> AttemptResult:
    return AttemptResult(status, None, 12.0, "", retry_after)


def error(msg: str, *, permanent: bool = False) -> AttemptResult:
    return AttemptResult(None, msg, 12.0, "", permanent=permanent)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_is_delivered(status: int) -> None:
    assert decide(answer(status), 1, SCHEDULE, 0.2) == Delivered()


@pytest.mark.parametrize("status", [100, 301, 302, 304, 307, 308, 400, 401, 404, 429, 500, 503])
def test_anything_else_is_retried(status: int) -> None:
    assert isinstance(decide(answer(status), 1, SCHEDULE, 0.2), RetryLater)


def test_a_network_error_or_timeout_is_retried() -> None:
    assert isinstance(decide(error("timeout after 15 s"), 1, SCHEDULE, 0.2), RetryLater)
    assert isinstance(decide(error("connection failed: refused"), 1, SCHEDULE, 0.2), RetryLater)


def test_410_is_gone_whatever_the_attempt() -> None:
    assert decide(answer(410), 1, SCHEDULE, 0.2) == Gone()
    assert decide(answer(410), len(SCHEDULE), SCHEDULE, 0.2) == Gone()


def test_a_guard_refusal_is_dead_at_once_with_its_reason() -> None:
    refusal = error("refused by the SSRF guard: private address 10.0.0.1", permanent=True)
    assert decide(refusal, 1, SCHEDULE, 0.2) == Failed(
        "refused by the SSRF guard: private address 10.0.0.1"
    )


def test_the_default_schedule_is_the_documented_one() -> None:
    assert SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


@pytest.mark.parametrize("attempt", range(1, len(SCHEDULE)))
def test_each_retry_waits_its_scheduled_delay_within_20_percent(attempt: int) -> None:
    rng = random.Random(attempt)
    for _ in range(200):
        outcome = decide(answer(500), attempt, SCHEDULE, 0.2, rng)
        assert isinstance(outcome, RetryLater)
        assert SCHEDULE[attempt] * 0.8 <= outcome.after <= SCHEDULE[attempt] * 1.2


def test_the_last_attempt_gives_up_naming_what_it_saw() -> None:
    outcome = decide(answer(503), len(SCHEDULE), SCHEDULE, 0.2)
    assert outcome == Failed("gave up after 8 attempts; last: HTTP 503")


def test_a_one_entry_schedule_means_a_single_attempt() -> None:
    assert decide(error("timeout after 15 s"), 1, (0.0,), 0.2) == Failed(
        "gave up after 1 attempts; last: timeout after 15 s"
    )


def test_jitter_spreads_delays_and_leaves_zero_alone() -> None:
    rng = random.Random(7)
    values = [jittered(100.0, 0.2, rng) for _ in range(500)]
    assert min(values) >= 80 and max(values) <= 120
    assert max(values) - min(values) > 30  # actually spread, not one value
    assert jittered(0.0, 0.2, rng) == 0.0
    assert jittered(5.0, 0.0, rng) == 5.0


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_longer_than_the_schedule_is_honoured(status: int) -> None:
    # Scheduled 5 s (4-6 s with jitter); the receiver asks for 8 s, within twice the schedule.
    outcome = decide(answer(status, retry_after=8), 1, SCHEDULE, 0.2)
    assert outcome == RetryLater(8)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_capped_at_twice_the_scheduled_delay(status: int) -> None:
    outcome = decide(answer(status, retry_after=86400), 1, SCHEDULE, 0.2)
    assert outcome == RetryLater(10)


def test_retry_after_shorter_than_the_schedule_does_not_hurry_the_retry() -> None:
    outcome = decide(answer(429, retry_after=1), 1, SCHEDULE, 0.2, random.Random(1))
    assert isinstance(outcome, RetryLater) and 4 <= outcome.after <= 6


def test_retry_after_on_other_statuses_is_ignored() -> None:
    outcome = decide(answer(500, retry_after=9), 1, SCHEDULE, 0.2, random.Random(1))
    assert isinstance(outcome, RetryLater) and 4 <= outcome.after <= 6


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = time.time()
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(" 7 ", now) == 7
    date = formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now) == pytest.approx(30, abs=1.5)
    assert parse_retry_after(formatdate(now - 60, usegmt=True), now) == 0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5e9", "١٢", "Wed, 99 Foo 2015"])
def test_unusable_retry_after_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value, time.time()) is None


@pytest.mark.parametrize(
    ("result", "label"),
    [
        (answer(204), "2xx"),
        (answer(308), "3xx"),
        (answer(404), "4xx"),
        (answer(503), "5xx"),
        (error("timeout after 15 s"), "timeout"),
        (error("refused by the SSRF guard: x", permanent=True), "refused"),
        (error("connection failed: x"), "error"),
    ],
)
def test_attempt_metric_labels_stay_few(result: AttemptResult, label: str) -> None:
    assert result.label == label


def test_an_attempt_record_keeps_status_or_error_duration_and_answer() -> None:
    assert answer(503).as_record(1700000000.12345) == {
        "at": 1700000000.123,
        "duration_ms": 12.0,
        "response": "",
        "status": 503,
    }
    assert error("timeout after 15 s").as_record(1.0)["error"] == "timeout after 15 s"


# --- the SSRF table -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback address 127.0.0.1"),
        ("127.255.0.9", "loopback address 127.255.0.9"),
        ("::1", "loopback address ::1"),
        ("::ffff:127.0.0.1", "loopback address 127.0.0.1"),
        ("0.0.0.0", "unspecified address 0.0.0.0"),  # noqa: S104 - an address, not a bind
        ("::", "unspecified address ::"),
        ("0.1.2.3", "reserved address 0.1.2.3"),
        ("169.254.169.254", "link-local address 169.254.169.254"),
        ("fe80::1", "link-local address fe80::1"),
        ("10.0.0.1", "private address 10.0.0.1"),
        ("172.16.0.1", "private address 172.16.0.1"),
        ("172.31.255.255", "private address 172.31.255.255"),
        ("192.168.1.1", "private address 192.168.1.1"),
        ("100.64.0.1", "CGNAT address 100.64.0.1"),
        ("fc00::1", "private address fc00::1"),
        ("fd12:3456::1", "private address fd12:3456::1"),
        ("224.0.0.1", "multicast address 224.0.0.1"),
        ("ff02::1", "multicast address ff02::1"),
        ("255.255.255.255", "broadcast address 255.255.255.255"),
        ("240.0.0.1", "reserved address 240.0.0.1"),
        ("192.0.2.10", "documentation address 192.0.2.10"),
        ("198.18.0.1", "benchmarking address 198.18.0.1"),
        ("::ffff:10.0.0.1", "private address 10.0.0.1"),
        ("64:ff9b::7f00:1", "loopback address 127.0.0.1 (embedded in 64:ff9b::7f00:1)"),
        ("2002:a00:1::1", "private address 10.0.0.1 (embedded in 2002:a00:1::1)"),
        ("2001::1", "reserved address 2001::1"),  # Teredo
        ("::127.0.0.1", "reserved address ::7f00:1"),  # IPv4-compatible, deprecated
    ],
)
def test_internal_addresses_are_refused_with_what_they_are(address: str, reason: str) -> None:
    assert blocked_reason(address) == reason


@pytest.mark.parametrize(
    "address", ["1.1.1.1", "8.8.8.8", "2606:4700:4700::1111", "64:ff9b::101:101", "2002:101:101::1"]
)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(address) is None


def test_the_allow_list_opens_exactly_its_ranges() -> None:
    allowed = parse_cidrs(["127.0.0.0/8", "10.1.0.0/16"])
    assert blocked_reason("127.0.0.1", allowed) is None
    assert blocked_reason("::ffff:127.0.0.1", allowed) is None  # mapped = the IPv4 address
    assert blocked_reason("10.1.2.3", allowed) is None
    assert blocked_reason("10.2.0.1", allowed) == "private address 10.2.0.1"
    assert blocked_reason("::1", allowed) == "loopback address ::1"  # another family


# --- ids and URLs ---------------------------------------------------------------------------------


def test_delivery_ids_sort_by_time_and_match_the_cursor_pattern() -> None:
    ids = [new_delivery_id() for _ in range(50)]
    assert all(ID_PATTERN.fullmatch(i) for i in ids)
    stamps = [i[: len("dlv_") + 14] for i in ids]  # the time part; the rest is random
    assert stamps == sorted(stamps)
    assert id_floor(time.time() - 1) < ids[0] < id_floor(time.time() + 1)


def test_each_room_and_url_has_its_own_queue() -> None:
    assert queue_id("r1", "https://a.example/h") != queue_id("r2", "https://a.example/h")
    assert queue_id("r1", "https://a.example/h") != queue_id("r1", "https://b.example/h")
    assert queue_id("r1", "https://a.example/h") == queue_id("r1", "https://a.example/h")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@hooks.example.com/h?token=abc", "https://hooks.example.com/h"),
        ("http://[::1]:8080/x#frag", "http://[::1]:8080/x"),
        ("http://example.com:99999/", "<unparseable URL>"),
    ],
)
def test_urls_in_logs_carry_no_credentials_or_query(url: str, shown: str) -> None:
    assert public_url(url) == shown
