"""Configuration mistakes are told in one line naming the variable, never with a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.api import API_KEY, API_SECRET, LK_KEY, LK_SECRET, WEBHOOK_SECRET

pytestmark = pytest.mark.slow  # real processes or injected faults

REQUIRED = {
    "LIVEKIT_API_KEY": LK_KEY,
    "LIVEKIT_API_SECRET": LK_SECRET,
    "ROOMKEEPER_API_KEY": API_KEY,
    "ROOMKEEPER_API_SECRET": API_SECRET,
    "ROOMKEEPER_WEBHOOK_SECRET": WEBHOOK_SECRET,
}


def roomkeeper(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the command in an empty directory (no .env) with only `env` configured."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ROOMKEEPER_", "LIVEKIT_"))}
    return subprocess.run(
        [sys.executable, "-m", "roomkeeper", *args],
        cwd=tmp_path,
        env={**clean, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_redis_address_without_scheme_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    done = roomkeeper(tmp_path, "api", env={**REQUIRED, "ROOMKEEPER_REDIS_URL": "localhost:6379"})

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("roomkeeper: invalid configuration: ROOMKEEPER_REDIS_URL: ")
    assert "redis://" in lines[0] and "Traceback" not in done.stderr
    assert "localhost:6379" not in done.stderr  # values are never echoed


def test_an_empty_item_in_a_list_is_refused(tmp_path: Path) -> None:
    done = roomkeeper(
        tmp_path, "api", env={**REQUIRED, "ROOMKEEPER_WEBHOOK_RETRY_SCHEDULE": "5,,10"}
    )

    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "roomkeeper: invalid configuration: ROOMKEEPER_WEBHOOK_RETRY_SCHEDULE: "
        "a comma-separated list must not have empty items (as in 5,,10)"
    ]


def test_a_misspelt_variable_is_warned_about_with_the_nearest_setting(tmp_path: Path) -> None:
    # A bad Redis URL as well, so the command stops right after reading its settings.
    env = {
        **REQUIRED,
        "ROOMKEEPER_WEBHOOK_RETRY_SHEDULE": "5,10",
        "ROOMKEEPER_REDIS_URL": "localhost:6379",
    }

    done = roomkeeper(tmp_path, "api", env=env)

    assert (
        "roomkeeper: warning: ROOMKEEPER_WEBHOOK_RETRY_SHEDULE is not a roomkeeper setting and "
        "is ignored; did you mean ROOMKEEPER_WEBHOOK_RETRY_SCHEDULE?"
    ) in done.stderr.splitlines()


def test_worker_check_needs_no_secrets(tmp_path: Path) -> None:
    health = tmp_path / "worker.health"
    env = {"ROOMKEEPER_WORKER_HEALTH_FILE": str(health)}

    missing = roomkeeper(tmp_path, "worker", "--check", env=env)
    health.write_text("alive")
    fresh = roomkeeper(tmp_path, "worker", "--check", env=env)

    assert (missing.returncode, fresh.returncode) == (1, 0), (missing.stdout, missing.stderr)
    assert "does not exist" in missing.stdout and "healthy" in fresh.stdout
    assert missing.stderr == fresh.stderr == ""


def test_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "roomkeeper", "--version"], capture_output=True, text=True
    )

    from worker import __version__

    assert (done.returncode, done.stdout.strip()) == (0, f"roomkeeper {__version__}")
