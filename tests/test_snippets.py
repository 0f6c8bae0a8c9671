"""The README's PHP and Node verification snippets verify a real roomkeeper webhook.

The snippets live in docs/snippets/; tests/snippets/ feeds them one delivery this test received
from a running roomkeeper, through Debian's `php` and `node` (installed by the Makefile).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import pytest
from redis.asyncio import Redis

from emulator.server import Emulator
from tests.support.api import API_KEY, API_SECRET, WEBHOOK_SECRET, minimal_request
from tests.support.servers import ROOT, Received, Receiver, RedisServer
from tests.support.stack import Stack, make_settings, run_stack

pytestmark = pytest.mark.slow  # real processes or injected faults

RUNNERS = {
    "php": ["php", str(ROOT / "tests/snippets/run_verify.php")],
    "node": ["node", str(ROOT / "tests/snippets/run_verify.js")],
}


def verify(
    language: str, delivery: Received, body: bytes | None = None, secret: str = WEBHOOK_SECRET
) -> tuple[int, str]:
    command = RUNNERS[language]
    # A missing interpreter fails the test: `make test` installs both.
    assert shutil.which(command[0]), f"{command[0]} is not installed (make installs it)"
    payload = {
        "body_b64": base64.b64encode(delivery.body if body is None else body).decode(),
        "headers": delivery.headers,
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "webhook_secret": secret,
    }
    done = subprocess.run(
        command, input=json.dumps(payload), capture_output=True, text=True, timeout=30
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("language", sorted(RUNNERS))
async def test_the_snippet_verifies_both_signatures_of_a_real_webhook(
    language: str, stack: Stack, receiver: Receiver
) -> None:
    await stack.api.create(minimal_request("snip", webhook_url=receiver.at("/hook")))
    await receiver.wait_for(lambda r: any(x.json["event"] == "room_created" for x in r))
    delivery = next(r for r in receiver.received if r.json["event"] == "room_created")

    code, out = verify(language, delivery)
    tampered = delivery.body.replace(b'"room_created"', b'"room_createD"')
    bad_code, bad_out = verify(language, delivery, tampered)

    assert (code, out.split()) == (0, ["jwt", "ok", "standard-webhooks", "ok"]), out
    assert (bad_code, bad_out.split()) == (1, ["jwt", "FAILED", "standard-webhooks", "FAILED"])


@pytest.mark.parametrize("language", sorted(RUNNERS))
async def test_the_snippet_verifies_with_the_older_secret_during_a_rotation(
    language: str,
    redis_server: RedisServer,
    redis: Redis,
    emulator: Emulator,
    receiver: Receiver,
) -> None:
    newer = "whsec_" + base64.b64encode(b"a newer secret, rotated in today").decode()
    settings = make_settings(
        redis_server.url, emulator.url, webhook_secret=f"{newer},{WEBHOOK_SECRET}"
    )
    async with run_stack(settings, emulator) as stack:
        await stack.api.create(minimal_request("rot", webhook_url=receiver.at("/hook")))
        await receiver.wait_for(lambda r: any(x.json["event"] == "room_created" for x in r))
    delivery = next(r for r in receiver.received if r.json["event"] == "room_created")

    assert len(delivery.headers["webhook-signature"].split()) == 2
    for secret in (newer, WEBHOOK_SECRET):  # a receiver still on the old one verifies too
        code, out = verify(language, delivery, secret=secret)
        assert (code, out.split()) == (0, ["jwt", "ok", "standard-webhooks", "ok"]), out
