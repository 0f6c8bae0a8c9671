"""Fuzzing every route from `/openapi.json` with schemathesis: no 5xx, every answer as documented.

The API, a worker and the LiveKit emulator run as processes; a requests auth hook signs each
generated body exactly as sent (HMAC over the prepared bytes), so generated cases get past
authentication and reach validation and the handlers. Both valid (positive) and schema-breaking
(negative) inputs are generated.
"""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from handlers.routes import ROUTES
from tests.support.api import API_KEY, API_SECRET
from tests.support.procs import emulator_process, roomkeeper_env
from tests.support.servers import Process, RedisServer, free_port, roomkeeper_cmd
from worker.webhooks.signing import body_hmac

pytestmark = pytest.mark.slow  # real processes or injected faults

EXAMPLES_PER_ROUTE = 15  # per route and mode: both modes over 16 routes is ~450 requests


class Signed(requests.auth.AuthBase):
    """plugNmeet's authentication, computed over the body exactly as it will be sent."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body
        request.headers["API-KEY"] = API_KEY
        request.headers["HASH-SIGNATURE"] = body_hmac(raw, API_SECRET)
        return request


def _wait_healthy(url: str, proc: Process, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as resp:  # noqa: S310
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"API not healthy:\n{proc.output()}")


@pytest.fixture(scope="module")
def live_api(redis_server: RedisServer) -> Iterator[str]:
    """Emulator, API and worker as processes for the whole module."""
    api_port = free_port()
    started: list[Process] = []
    with emulator_process(f"http://127.0.0.1:{api_port}/webhook") as livekit_url:
        try:
            env = roomkeeper_env(redis_server.url, livekit_url)
            api = Process(roomkeeper_cmd("api", "--port", str(api_port)), env, "api").start()
            started.append(api)
            started.append(Process(roomkeeper_cmd("worker"), env, "worker").start())
            url = f"http://127.0.0.1:{api_port}"
            _wait_healthy(url, api)
            yield url
        finally:
            for proc in reversed(started):
                proc.stop()


def test_no_route_answers_5xx_and_every_answer_matches_its_schema(live_api: str) -> None:
    schema = schemathesis.openapi.from_url(f"{live_api}/openapi.json")
    schema.config.generation.update(with_security_parameters=False)
    session = requests.Session()
    session.auth = Signed()
    seen: Counter[str] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    # Every route of the table, LiveKit's webhook and the operational routes are fuzzed (all
    # but /openapi.json itself, which schemathesis leaves out).
    paths = {o.path for o in operations}
    assert {r.path for r in ROUTES} <= paths, sorted({r.path for r in ROUTES} - paths)
    assert {"/webhook", "/healthz", "/readyz", "/metrics"} <= paths, sorted(paths)
    # A test send POSTs to whatever URL it is given: generated URLs would reach other machines
    # (or their DNS). Its validation is covered in test_delivery_api, its sends in
    # test_protection.
    operations = [o for o in operations if o.path != "/auth/webhook/test"]

    for operation in operations:
        # A GET without parameters has no invalid form to generate.
        modes = [GenerationMode.POSITIVE]
        if operation.method.upper() == "POST":
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_ROUTE,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def exercise(case: schemathesis.Case) -> None:
                response = case.call(base_url=live_api, session=session, timeout=30)
                seen["requests"] += 1
                seen["5xx"] += response.status_code >= 500
                case.validate_response(
                    response,
                    checks=[
                        not_a_server_error,
                        status_code_conformance,
                        content_type_conformance,
                        response_schema_conformance,
                    ],
                )

            exercise()

    print(f"\nfuzz: {seen['requests']} generated requests, {seen['5xx']} answered 5xx")
    assert seen["requests"] >= 300
    assert seen["5xx"] == 0
