"""The operator console in a real browser: Playwright driving Debian's chromium against the real
API, worker, Redis, emulator and receiver. Also what a browser cannot show: 401 without
credentials and 403 for a POST without the CSRF token."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright
from redis.asyncio import Redis

from tests.support.api import API_KEY, API_SECRET, eventually, minimal_request
from tests.support.delivery import record
from tests.support.servers import Receiver
from tests.support.stack import Stack, make_settings, run_api
from worker import keys
from worker.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Each browser test starts its own chromium (1.5 to 2 s): they run in `make test`, not in
# `make test-fast`.
BROWSER = pytest.mark.slow


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's chromium (never a downloaded browser); a missing one fails the test."""
    if shutil.which(CHROMIUM) is None:
        raise RuntimeError("chromium is not installed: run `make test` (it installs it)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def _dead_room_created(stack: Stack, redis: Redis, receiver: Receiver) -> str:
    """A room whose `room_created` went dead (its receiver answered 500 four times)."""
    receiver.script["/lms"] = [500] * 4
    created = await stack.api.create(minimal_request("maths-101", webhook_url=receiver.at("/lms")))
    assert created["status"] is True, created

    async def dead() -> str | None:
        ids = await redis.zrange(keys.deliveries_in_state("dead"), 0, -1)
        return ids[0] if ids else None

    return await eventually(dead, what="a dead room_created")


async def _page(browser: Browser, **context: object) -> Page:
    ctx = await browser.new_context(**context)  # type: ignore[arg-type]
    return await ctx.new_page()


@BROWSER
async def test_an_operator_sees_a_room_and_a_dead_delivery_and_redelivers_it(
    stack: Stack, redis: Redis, receiver: Receiver, browser: Browser
) -> None:
    did = await _dead_room_created(stack, redis, receiver)
    page = await _page(browser, http_credentials={"username": API_KEY, "password": API_SECRET})

    answer = await page.goto(f"{stack.url}/console/rooms")
    assert answer is not None and answer.status == 200
    row = page.locator("tr", has_text="maths-101")
    await row.wait_for()
    assert "created" in await row.inner_text() or "active" in await row.inner_text()
    assert await row.locator("code", has_text="empty").count() == 1  # its empty timer is due

    await page.goto(f"{stack.url}/console/deliveries?state=dead")
    dead = page.locator(f"tr#{did}")
    assert "room_created" in await dead.inner_text()
    assert "HTTP 500" in await dead.inner_text()
    shot = os.environ.get("ROOMKEEPER_CONSOLE_SCREENSHOT")
    if shot:  # how the README's screenshot is made
        await page.set_viewport_size({"width": 1280, "height": 640})
        await page.screenshot(path=str(Path(shot)), full_page=True)
    await dead.get_by_role("button", name="Redeliver").click()
    await page.wait_for_url("**/console/deliveries?state=dead&msg=*")
    assert f"{did}: queued" in await page.locator(".flash").inner_text()

    async def shown_delivered() -> bool:
        await page.goto(f"{stack.url}/console/deliveries?room_id=maths-101")
        return "delivered" in await page.locator(f"tr#{did} .state").inner_text()

    await eventually(shown_delivered, what="the redelivered delivery shown delivered")
    assert [r.json["event"] for r in receiver.received if r.path == "/lms"][-1] == "room_created"
    assert receiver.received[-1].headers["webhook-id"] == (await record(redis, did))["event_id"]


@BROWSER
async def test_the_console_test_send_shows_the_receivers_answer(
    stack: Stack, receiver: Receiver, browser: Browser
) -> None:
    page = await _page(browser, http_credentials={"username": API_KEY, "password": API_SECRET})
    await page.goto(f"{stack.url}/console/hosts")
    await page.fill("input[name=url]", receiver.at("/try"))
    await page.get_by_role("button", name="Send test event").click()
    await page.wait_for_url("**/console/test")

    assert "HTTP 200" in await page.locator("#outcome").inner_text()
    assert [r.json["event"] for r in receiver.received if r.path == "/try"] == ["webhook_test"]


@BROWSER
async def test_no_credentials_get_401_and_wrong_ones_too(stack: Stack, browser: Browser) -> None:
    page = await _page(browser)
    # Headless chromium aborts a navigation that meets a Basic challenge it cannot answer, so
    # the browser context's own request client shows the status.
    answer = await page.request.get(f"{stack.url}/console/")
    assert answer.status == 401
    assert "API key and secret" in await answer.text()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack.url}/console/deliveries") as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Basic")
        wrong = {"Authorization": aiohttp.encode_basic_auth(API_KEY, "not-the-secret")}
        async with http.get(f"{stack.url}/console/hosts", headers=wrong) as resp:
            assert resp.status == 401


async def test_a_post_without_the_csrf_token_is_refused(
    stack: Stack, redis: Redis, receiver: Receiver
) -> None:
    did = await _dead_room_created(stack, redis, receiver)
    creds = {"Authorization": aiohttp.encode_basic_auth(API_KEY, API_SECRET)}
    async with aiohttp.ClientSession() as http:
        for form in ({"delivery_id": did}, {"delivery_id": did, "csrf": "0" * 64}):
            async with http.post(
                f"{stack.url}/console/redeliver", data=form, headers=creds, allow_redirects=False
            ) as resp:
                assert resp.status == 403, form

    assert (await record(redis, did))["state"] == "dead"


async def test_the_console_password_opens_it_and_an_empty_one_never_does(
    settings: Settings, redis: Redis
) -> None:
    with_password = make_settings(
        settings.redis_url, settings.livekit_url, console_password="corridor-lamp-42"
    )
    assert make_settings(settings.redis_url, settings.livekit_url, console_password="") == (
        make_settings(settings.redis_url, settings.livekit_url)
    )
    async with run_api(with_password) as url, aiohttp.ClientSession() as http:
        for user, password, status in (
            ("operator", "corridor-lamp-42", 200),
            (API_KEY, API_SECRET, 200),
            ("operator", "", 401),
            ("operator", "corridor-lamp", 401),
        ):
            auth = {"Authorization": aiohttp.encode_basic_auth(user, password)}
            async with http.get(f"{url}/console/", headers=auth) as resp:
                assert resp.status == status, (user, password)


@BROWSER
async def test_a_room_scheduled_ahead_is_listed_on_the_scheduled_page(
    stack: Stack, browser: Browser
) -> None:
    start_at = int(time.time()) + 3600
    status, body = await stack.api.post(
        "/auth/room/create", {**minimal_request("term-start-01"), "start_at": start_at}
    )
    assert status == 202 and body["msg"] == "scheduled", body
    page = await _page(browser, http_credentials={"username": API_KEY, "password": API_SECRET})

    await page.goto(f"{stack.url}/console/scheduled")

    row = page.locator("tr", has_text="term-start-01")
    text = await row.inner_text()
    assert time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(start_at)) in text
    assert body["job_id"] in text
