"""The webhook connection pool (worker/webhooks/http1.py) against real servers on 127.0.0.1/::1.

A raw TCP server answers with exactly the bytes each test scripts, so kept-alive reuse, answers
cut at 4 KiB, chunked and close-delimited answers, interim answers, early closes and garbage are
each what a receiver really sent; aiohttp's own server and a TLS one check what a real HTTP
server reads from us. End to end (a worker, hostile receivers, the SSRF probe) is in
test_delivery.py, test_faults_receivers.py and test_delivery_ssrf.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.api import eventually
from tests.support.hostile import make_certs, tls_receiver
from tests.support.servers import run_receiver
from worker.webhooks.http1 import (
    RESPONSE_KEEP,
    BlockedAddress,
    ClosedEarly,
    InvalidTarget,
    NotHttp,
    Pool,
    target,
)
from worker.webhooks.netguard import parse_cidrs

LOOPBACK = parse_cidrs(["127.0.0.0/8", "::1/128"])
HEADERS = {"Content-Type": "application/json", "webhook-id": "msg_1", "Authorization": "tok"}
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class Scripted:
    """A raw server: request i (counted over all connections) gets `answers[i]` (none past the
    end), and the connection closes after it if i is in `close_after`; it records each request,
    how many connections it accepted and how many the client closed."""

    answers: list[bytes]
    close_after: set[int] = field(default_factory=set)  # request numbers closed after answering
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    closed_by_client: int = 0
    url: str = ""


async def _request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


@contextlib.asynccontextmanager
async def scripted(
    answers: list[bytes], host: str = "127.0.0.1", close_after: set[int] | None = None
) -> AsyncIterator[Scripted]:
    state = Scripted(answers, close_after or set())

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            while True:
                try:
                    state.requests.append(await _request(reader))
                except (asyncio.IncompleteReadError, ConnectionError):
                    state.closed_by_client += 1
                    return
                number = len(state.requests) - 1
                if number < len(state.answers):
                    writer.write(state.answers[number])
                    await writer.drain()
                if number in state.close_after:
                    return
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, host, 0)
    port = server.sockets[0].getsockname()[1]
    state.url = f"http://{'[::1]' if ':' in host else host}:{port}/hook?x=1"
    try:
        yield state
    finally:
        server.close()


async def test_posts_reuse_one_kept_alive_connection_and_arrive_byte_for_byte() -> None:
    async with scripted([OK] * 5) as server, Pool(LOOPBACK) as pool:
        for i in range(5):
            answer = await pool.post(server.url, b'{"n":%d}' % i, HEADERS, 5)
            assert (answer.status, answer.body) == (200, b"ok")
        assert pool.idle() == 1
    assert server.connections == 1 and len(server.requests) == 5
    port = server.url.split(":")[2].split("/")[0]
    assert server.requests[3] == (
        b"POST /hook?x=1 HTTP/1.1\r\nHost: 127.0.0.1:" + port.encode() + b"\r\n"
        b"Content-Type: application/json\r\nwebhook-id: msg_1\r\nAuthorization: tok\r\n"
        b'Content-Length: 7\r\nAccept-Encoding: identity\r\n\r\n{"n":3}'
    )


async def test_a_real_http_server_reads_the_headers_and_body_we_sent() -> None:
    async with run_receiver() as receiver, Pool(LOOPBACK) as pool:
        answer = await pool.post(receiver.at("/in"), b'{"a":1}', HEADERS, 5)
        assert (answer.status, answer.body) == (200, b"ok")
    got = receiver.received[0]
    assert got.path == "/in" and got.body == b'{"a":1}'
    assert {k: got.headers[k] for k in HEADERS} == HEADERS


async def test_an_answer_past_4_kib_is_cut_and_its_connection_not_reused() -> None:
    big = b"x" * 100_000
    answer_bytes = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big)
    async with scripted([answer_bytes, OK]) as server, Pool(LOOPBACK) as pool:
        answer = await pool.post(server.url, b"{}", HEADERS, 5)
        assert answer.status == 200 and answer.body == big[:RESPONSE_KEEP]
        assert (await pool.post(server.url, b"{}", HEADERS, 5)).body == b"ok"
    assert server.connections == 2


async def test_a_chunked_answer_and_its_retry_after_are_read_and_the_connection_kept() -> None:
    chunked = (
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    async with scripted([chunked, OK]) as server, Pool(LOOPBACK) as pool:
        answer = await pool.post(server.url, b"{}", HEADERS, 5)
        assert (answer.status, answer.body, answer.retry_after) == (503, b"hello world", "7")
        await pool.post(server.url, b"{}", HEADERS, 5)
    assert server.connections == 1


async def test_an_answer_ended_by_closing_is_whole_and_the_next_post_reconnects() -> None:
    ended = b"HTTP/1.1 202 Accepted\r\nConnection: close\r\n\r\nbye"
    async with scripted([ended, OK], close_after={0}) as server, Pool(LOOPBACK) as pool:
        answer = await pool.post(server.url, b"{}", HEADERS, 5)
        assert (answer.status, answer.body) == (202, b"bye")
        assert (await pool.post(server.url, b"{}", HEADERS, 5)).status == 200
    assert server.connections == 2


async def test_an_interim_100_answer_is_skipped_for_the_final_one() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    async with scripted([interim]) as server, Pool(LOOPBACK) as pool:
        assert (await pool.post(server.url, b"{}", HEADERS, 5)).status == 201


async def test_an_answer_cut_short_by_the_receiver_fails_as_closed_early() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npart"
    async with scripted([cut], close_after={0}) as server, Pool(LOOPBACK) as pool:
        with pytest.raises(ClosedEarly):
            await pool.post(server.url, b"{}", HEADERS, 5)
        assert pool.idle() == 0


async def test_an_answer_that_is_not_http_fails_as_such() -> None:
    async with scripted([b"SSH-2.0-OpenSSH_9.2\r\n"]) as server, Pool(LOOPBACK) as pool:
        with pytest.raises(NotHttp, match=r"not HTTP/1\.1"):
            await pool.post(server.url, b"{}", HEADERS, 5)


async def test_an_endless_answer_head_is_cut_off() -> None:
    endless = b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 200_000 + b"\r\n\r\n"
    async with scripted([endless]) as server, Pool(LOOPBACK) as pool:
        with pytest.raises(NotHttp, match="head is over 65536 bytes"):
            await pool.post(server.url, b"{}", HEADERS, 5)


async def test_a_connection_the_receiver_closed_while_idle_is_not_reused() -> None:
    async with scripted([OK, OK], close_after={0}) as server, Pool(LOOPBACK) as pool:
        await pool.post(server.url, b"{}", HEADERS, 5)  # kept: the answer said nothing of closing
        await eventually(lambda: pool.idle() == 0, what="the pool saw the receiver's close")
        assert (await pool.post(server.url, b"{}", HEADERS, 5)).status == 200
    assert server.connections == 2


async def test_an_unanswered_post_times_out_and_its_connection_is_closed() -> None:
    async with scripted([]) as server, Pool(LOOPBACK) as pool:
        with pytest.raises(TimeoutError):
            await pool.post(server.url, b"{}", HEADERS, 0.3)
        await eventually(lambda: server.closed_by_client == 1, what="the client closed")
        assert pool.idle() == 0


async def test_the_guard_refuses_a_literal_internal_address_without_connecting() -> None:
    async with scripted([OK]) as server, Pool() as pool:
        with pytest.raises(BlockedAddress, match="refused by the SSRF guard: loopback address"):
            await pool.post(server.url, b"{}", HEADERS, 5)
    assert server.connections == 0


async def test_the_guard_refuses_a_name_that_resolves_only_to_internal_addresses() -> None:
    async with scripted([OK]) as server, Pool() as pool:
        url = server.url.replace("127.0.0.1", "localhost")
        with pytest.raises(BlockedAddress, match="localhost resolves only to loopback address"):
            await pool.post(url, b"{}", HEADERS, 5)
    assert server.connections == 0


async def test_a_name_is_tried_address_by_address_until_one_connects() -> None:
    # localhost is ::1 and 127.0.0.1; the server listens on 127.0.0.1 only.
    async with scripted([OK]) as server, Pool(LOOPBACK) as pool:
        url = server.url.replace("127.0.0.1", "localhost")
        assert (await pool.post(url, b"{}", HEADERS, 5)).status == 200
    assert server.requests[0].split(b"\r\n")[1].startswith(b"Host: localhost:")


async def test_ipv6_loopback_is_reached_with_a_bracketed_host_header() -> None:
    async with scripted([OK], host="::1") as server, Pool(LOOPBACK) as pool:
        assert (await pool.post(server.url, b"{}", HEADERS, 5)).status == 200
    assert server.requests[0].split(b"\r\n")[1].startswith(b"Host: [::1]:")


@pytest.mark.parametrize(
    "headers", [{"X-Evil": "a\r\nInjected: yes"}, {"X-Evil": "a\nb"}, {"Bad\r\nName": "v"}]
)
async def test_a_header_that_would_break_the_request_is_refused_before_sending(
    headers: dict[str, str],
) -> None:
    async with scripted([OK]) as server, Pool(LOOPBACK) as pool:
        with pytest.raises(ValueError, match="would break the request"):
            await pool.post(server.url, b"{}", headers, 5)
    assert server.connections == 0


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hook", "scheme must be http or https"),
        ("http://user:secret@example.com/hook", "credentials in the URL"),
        ("http:///hook", "names no host"),
        ("hook", "scheme must be http or https"),
    ],
)
def test_urls_no_attempt_can_be_made_to_are_invalid_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(InvalidTarget, match=reason) as caught:
        target(url)
    assert "secret" not in str(caught.value)


async def test_tls_is_verified_and_a_verified_connection_is_kept(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    trusting = ssl.create_default_context(cafile=str(certs.ca))
    async with (
        tls_receiver(certs.valid) as (url, receiver),
        tls_receiver(certs.self_signed) as (self_signed_url, _),
        Pool(LOOPBACK, tls=trusting) as pool,
    ):
        for _ in range(3):
            assert (await pool.post(url, b"{}", HEADERS, 5)).status == 200
        assert pool.idle() == 1 and len(receiver.received) == 3
        with pytest.raises(ssl.SSLCertVerificationError, match="self-signed certificate"):
            await pool.post(self_signed_url, b"{}", HEADERS, 5)
