"""HTTP safety of the real ``pushgate serve`` (#15 item 4, #20 "HTTP safety"), black-box
over raw sockets: malformed framing, oversize heads, slow heads and bodies, thousands of
half-sent requests, and the per-client-IP limits on connections, connect rate and
open-connection rate (client addresses 127.0.0.x: the whole 127/8 is loopback).

Nothing here knows how the server is built: these must keep passing when the hub's
connection layer is rebuilt."""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect as ws_connect

from tests.support.rawhttp import read_reply
from tests.support.server import ServerProcess, running_server
from tests.support.waiting import wait_for

HEADER_TIMEOUT = 3.0  # 5,000 connections take ~1.5 s to open here: all open at once
REQUEST_TIMEOUT = 1.0
MAX_HEAD = 4096
EARLY = 0.05  # clock slack between this process and the server


@pytest.fixture(scope="module")
def safety(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Short deadlines, no per-IP limits (the 5,000 half-sent requests come from one IP)."""
    with running_server(tmp_path_factory.mktemp("safety"),
                        PUSHGATE_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT),
                        PUSHGATE_REQUEST_TIMEOUT_S=str(REQUEST_TIMEOUT),
                        PUSHGATE_MAX_HEADER_BYTES=str(MAX_HEAD),
                        PUSHGATE_MAX_CONNECTIONS_PER_IP="0",
                        PUSHGATE_CONNECT_RATE_PER_IP="0") as srv:
        yield srv


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Small per-IP limits; every test uses client addresses of its own."""
    with running_server(tmp_path_factory.mktemp("limited"),
                        PUSHGATE_MAX_CONNECTIONS_PER_IP="5",
                        PUSHGATE_CONNECT_RATE_PER_IP="10",
                        PUSHGATE_OPEN_CONNECTION_RATE_PER_IP="3") as srv:
        yield srv


# -- raw HTTP helpers ------------------------------------------------------------------------


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_conn(srv: ServerProcess, source: str = "127.0.0.1") -> Conn:
    return await asyncio.open_connection("127.0.0.1", srv.port, local_addr=(source, 0))


async def closed(reader: asyncio.StreamReader, timeout: float = 10.0) -> bool:
    """True once the server has closed (EOF or reset) within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    return True


def error_of(body: bytes) -> dict[str, Any]:
    error: dict[str, Any] = orjson.loads(body)["error"]
    assert set(error) <= {"code", "message", "retryable", "field"}, error
    return error


def get(path: str = "/healthz", extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n"


def head_of_size(size: int) -> bytes:
    """A ``GET /healthz`` head of exactly ``size`` bytes."""
    start = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: "
    return start + b"p" * (size - len(start) - 4) + b"\r\n\r\n"


async def healthz_time(srv: ServerProcess, source: str = "127.0.0.1") -> float:
    """Seconds for a fresh connection's ``GET /healthz`` to be answered 200."""
    started = time.monotonic()
    reader, writer = await open_conn(srv, source)
    try:
        writer.write(get())
        status, _, _ = await read_reply(reader)
        assert status == 200
        return time.monotonic() - started
    finally:
        writer.close()


# -- framing and sizes -----------------------------------------------------------------------


@pytest.mark.parametrize(("head", "field"), [
    (b"POST /v1/notifications HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding"),
    (b"POST /v1/notifications HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Length: 2\r\n\r\n", "Content-Length"),
    (b"POST /v1/notifications HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
     b"Content-Length: 3\r\n\r\n{}", "Content-Length"),
], ids=["cl-then-te", "te-then-cl", "two-content-lengths"])
async def test_conflicting_body_framing_is_a_json_400_naming_the_header(
        safety: ServerProcess, head: bytes, field: str) -> None:
    reader, writer = await open_conn(safety)
    writer.write(head)
    status, headers, body = await read_reply(reader)
    assert status == 400 and headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    error = error_of(body)
    assert (error["code"], error["field"], error["retryable"]) == \
        ("invalid_request", field, False)
    assert await closed(reader, 5)
    writer.close()


@pytest.mark.parametrize("coding", [b"gzip, chunked", b"x-custom,chunked", b"deflate, chunked",
                                    b"chunked, chunked"])
@pytest.mark.parametrize("path", [b"/v1/notifications", b"/v1/users/te-user/read"])
async def test_a_transfer_coding_other_than_chunked_is_refused_and_nothing_is_done(
        safety: ServerProcess, coding: bytes, path: bytes) -> None:
    """llhttp reads ``gzip, chunked`` as chunked: the request must not be served as if its
    body were not coded (400 naming the header; nothing stored, nothing marked)."""
    user = "te-" + coding.decode().replace(",", "").replace(" ", "-")
    body = orjson.dumps({"users": [user], "body": 1} if path == b"/v1/notifications"
                        else {"seqs": [1]})
    reader, writer = await open_conn(safety)
    writer.write(b"POST " + path + b" HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
                 + safety.api_key.encode() + b"\r\nTransfer-Encoding: " + coding
                 + b"\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    status, _, reply = await read_reply(reader)
    assert status == 400
    error = error_of(reply)
    assert (error["code"], error["field"]) == ("invalid_request", "Transfer-Encoding")
    assert await closed(reader, 5)
    writer.close()
    async with safety.http() as http:
        r = await http.get(f"/v1/users/{user}/events")
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_user"


@pytest.mark.parametrize("coding", [b"gzip", b"br", b"deflate", b"zstd", b"x-custom"])
@pytest.mark.parametrize("path", [b"/v1/notifications", b"/v1/users/ce-user/read"])
async def test_a_content_coding_is_refused_naming_the_header_and_nothing_is_done(
        safety: ServerProcess, coding: bytes, path: bytes) -> None:
    """http-api.md, conventions: bodies are uncompressed. Plain JSON labelled
    ``Content-Encoding: gzip`` was served as if unlabelled, and a br or deflate body got
    "not valid JSON: … surrogates not allowed"."""
    user = "ce-" + coding.decode()
    body = orjson.dumps({"users": [user], "body": 1} if path == b"/v1/notifications"
                        else {"seqs": [1]})
    reader, writer = await open_conn(safety)
    writer.write(b"POST " + path + b" HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
                 + safety.api_key.encode() + b"\r\nContent-Encoding: " + coding
                 + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    status, headers, reply = await read_reply(reader)
    assert status == 400 and headers["content-type"] == "application/json"
    error = error_of(reply)
    assert (error["code"], error["field"]) == ("invalid_request", "Content-Encoding")
    assert coding.decode() in error["message"]
    writer.close()
    async with safety.http() as http:
        r = await http.get(f"/v1/users/{user}/events")
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_user"
        # identity is no coding at all
        r = await http.post("/v1/notifications", json={"users": ["ce-identity"], "body": 1},
                            headers={"Content-Encoding": "identity"})
        assert r.status_code == 200, r.text


async def test_a_malformed_request_line_is_a_json_400_too(safety: ServerProcess) -> None:
    """What uvicorn alone answers with a text/plain 400 (a URL its parser rejects)."""
    reader, writer = await open_conn(safety)
    writer.write(b"GET http://[::1 HTTP/1.1\r\nHost: t\r\n\r\n")
    status, _, body = await read_reply(reader)
    assert status == 400 and error_of(body)["code"] == "invalid_request"
    writer.close()


async def test_oversize_head_is_431_and_a_head_at_the_limit_is_served(
        safety: ServerProcess) -> None:
    reader, writer = await open_conn(safety)
    writer.write(head_of_size(MAX_HEAD))
    status, _, _ = await read_reply(reader)
    assert status == 200
    for i in range(0, MAX_HEAD + 1, 1000):  # the next request, over the limit, in pieces
        writer.write(head_of_size(MAX_HEAD + 1)[i:i + 1000])
        await writer.drain()
    status, headers, body = await read_reply(reader)
    assert status == 431 and headers["content-type"] == "application/json"
    error = error_of(body)
    assert error["code"] == "header_too_large" and error["retryable"] is False
    assert str(MAX_HEAD) in error["message"]
    assert await closed(reader, 5)
    writer.close()


async def test_a_huge_head_in_one_write_is_431(safety: ServerProcess) -> None:
    reader, writer = await open_conn(safety)
    writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nCookie: " + b"c" * 1_000_000)
    status, _, body = await read_reply(reader)
    assert status == 431 and error_of(body)["code"] == "header_too_large"
    writer.close()


# -- deadlines -------------------------------------------------------------------------------


async def test_slow_body_is_408_after_request_timeout(safety: ServerProcess) -> None:
    """The body deadline counts from the head, not from the last byte: a trickle does
    not extend it."""
    reader, writer = await open_conn(safety)
    writer.write(b"POST /v1/notifications HTTP/1.1\r\nHost: t\r\n"
                 b"Authorization: Bearer " + safety.api_key.encode() + b"\r\n"
                 b"Content-Length: 100\r\n\r\n{\"users\":")
    started = time.monotonic()

    async def trickle() -> None:
        while True:
            await asyncio.sleep(0.2)
            writer.write(b" ")

    dripping = asyncio.create_task(trickle())
    try:
        status, headers, body = await read_reply(reader, REQUEST_TIMEOUT + 5)
    finally:
        dripping.cancel()
    elapsed = time.monotonic() - started
    assert status == 408 and headers["connection"] == "close"
    error = error_of(body)
    assert error["code"] == "request_timeout" and error["retryable"] is True
    assert REQUEST_TIMEOUT - EARLY <= elapsed < REQUEST_TIMEOUT + 3
    assert await closed(reader, 5)
    writer.close()


async def test_a_websocket_upgrade_never_completed_is_closed_after_header_timeout(
        safety: ServerProcess) -> None:
    reader, writer = await open_conn(safety)
    token = safety.token("ursula")
    writer.write(f"GET /v1/ws?token={token} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n".encode())
    started = time.monotonic()
    status, _, body = await read_reply(reader, HEADER_TIMEOUT + 5)
    assert status == 408 and error_of(body)["code"] == "request_timeout"
    assert time.monotonic() - started >= HEADER_TIMEOUT - EARLY
    assert await closed(reader, 5)
    writer.close()


async def test_a_connection_that_sends_nothing_is_closed_without_a_reply(
        safety: ServerProcess) -> None:
    reader, writer = await open_conn(safety)
    started = time.monotonic()
    assert await reader.read() == b""  # EOF, no 408 for a request that never began
    assert HEADER_TIMEOUT - EARLY <= time.monotonic() - started < HEADER_TIMEOUT + 5
    writer.close()


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < need:
        pytest.skip(f"needs {need} file descriptors, the limit is {soft}")


async def test_5000_half_sent_requests_are_all_closed_after_header_timeout_while_others_are_served(
        safety: ServerProcess) -> None:
    count = 5000
    raise_fd_limit(count + 500)
    half = b"POST /v1/notifications HTTP/1.1\r\nHost: t\r\nContent-Le"
    conns: list[Conn] = []
    sent: list[float] = []

    async def attacker() -> None:
        reader, writer = await open_conn(safety)
        writer.write(half)
        conns.append((reader, writer))
        sent.append(time.monotonic())

    try:
        for _ in range(0, count, 250):  # within the listen backlog
            await asyncio.gather(*(attacker() for _ in range(250)))
        last_sent = max(sent)
        # during the attack: a normal request on another connection is served at once
        assert time.monotonic() - last_sent < HEADER_TIMEOUT - 0.3, "connecting took too long"
        assert await healthz_time(safety) < 0.3
        assert time.monotonic() < min(sent) + HEADER_TIMEOUT, "all were still open then"

        async def outcome(reader: asyncio.StreamReader) -> tuple[int, float]:
            status, _, body = await read_reply(reader, HEADER_TIMEOUT + 20)
            assert error_of(body)["code"] == "request_timeout"
            await closed(reader, 10)
            return status, time.monotonic()

        results = await asyncio.gather(*(outcome(r) for r, _ in conns))
        assert [s for s, _ in results] == [408] * count  # every one answered and closed
        early = [t - s for (_, t), s in zip(results, sent, strict=True)
                 if t - s < HEADER_TIMEOUT - EARLY]
        assert not early, f"{len(early)} closed before header_timeout_s"
        assert time.monotonic() - last_sent < HEADER_TIMEOUT + 10
        assert await healthz_time(safety) < 0.3  # and the server is fine afterwards
    finally:
        for _, writer in conns:
            writer.close()


# -- per-IP limits ---------------------------------------------------------------------------


async def test_an_ip_over_its_connection_limit_gets_429_while_another_ip_is_served(
        limited: ServerProcess) -> None:
    held = [await open_conn(limited, "127.0.0.2") for _ in range(5)]
    try:
        reader, writer = await open_conn(limited, "127.0.0.2")
        writer.write(get())
        status, headers, body = await read_reply(reader)
        assert status == 429 and headers["connection"] == "close"
        assert int(headers["retry-after"]) >= 1
        error = error_of(body)
        assert error["code"] == "too_many_connections" and error["retryable"] is True
        assert await closed(reader, 5)
        writer.close()

        assert await healthz_time(limited, "127.0.0.3") < 1  # another IP is served

        held.pop()[1].close()  # a slot of 127.0.0.2 is free again
        await wait_for(lambda: status_of(limited, "127.0.0.2"), 10, "a connection admitted",
                       until=lambda s: s == 200)
    finally:
        for _, w in held:
            w.close()


async def status_of(srv: ServerProcess, source: str) -> int:
    reader, writer = await open_conn(srv, source)
    try:
        writer.write(get(extra=b"Connection: close\r\n"))
        status, _, _ = await read_reply(reader)
        return status
    finally:
        writer.close()


async def test_websockets_hold_a_connection_slot_until_they_close(
        limited: ServerProcess) -> None:
    """An upgraded connection counts toward max_connections_per_ip until it is lost
    (the websocket side releases it)."""
    sockets = [await ws_connect(f"{limited.ws_url}?token={limited.token(f'w{i}')}",
                                local_addr=("127.0.0.4", 0)) for i in range(5)]
    try:
        for ws in sockets:
            assert orjson.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
        assert await status_of(limited, "127.0.0.4") == 429
        await sockets.pop().close()
        await wait_for(lambda: status_of(limited, "127.0.0.4"), 10, "the slot released",
                       until=lambda s: s == 200)
    finally:
        for ws in sockets:
            await ws.close()


async def test_connect_rate_per_ip_is_429_rate_limited(limited: ServerProcess) -> None:
    statuses = []
    for _ in range(15):  # one at a time: never over the 5 open connections
        reader, writer = await open_conn(limited, "127.0.0.5")
        writer.write(get(extra=b"Connection: close\r\n"))
        status, headers, body = await read_reply(reader)
        statuses.append(status)
        if status == 429:
            error = error_of(body)
            assert error["code"] == "rate_limited" and error["retryable"] is True
            assert int(headers["retry-after"]) >= 1
        await closed(reader, 5)
        writer.close()
    assert statuses[:10] == [200] * 10  # the burst
    assert 429 in statuses[10:]
    assert await healthz_time(limited, "127.0.0.6") < 1  # others are not limited


async def test_a_send_refused_at_connect_reads_its_429_not_a_reset(
        limited: ServerProcess) -> None:
    """http-api.md: a refusal comes with its body and Retry-After. A POST over
    connect_rate_per_ip whose body had arrived when the 429 was written was answered by a
    reset (the socket closed with the request unread): clients saw a connection error, a
    "may or may not be stored" for a send that was not."""
    body = orjson.dumps({"users": ["rate"], "body": "x" * 2000})
    request = (b"POST /v1/notifications HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
               b"\r\nAuthorization: Bearer " + limited.api_key.encode() +
               b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    # 20 at once: over the 5 open connections and the burst of 10 new ones
    conns = [await open_conn(limited, "127.0.0.9") for _ in range(20)]
    for _, writer in conns:
        writer.write(request)  # at once, before the gateway's answer
    statuses = []
    for reader, writer in conns:
        status, _headers, reply = await read_reply(reader)
        statuses.append(status)
        if status == 429:
            assert error_of(reply)["code"] in ("rate_limited", "too_many_connections")
        writer.close()
    assert statuses.count(200) == 5 and statuses.count(429) == 15, statuses


async def test_open_connection_rate_per_client_is_429_rate_limited(
        limited: ServerProcess) -> None:
    def client(source: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=limited.base_url, timeout=10,
            headers={"Authorization": f"Bearer {limited.api_key}"},
            transport=httpx.AsyncHTTPTransport(local_address=source))

    async with client("127.0.0.7") as http, client("127.0.0.8") as other:
        replies = [await http.post("/v1/open-connection", json={"user": "olga"})
                   for _ in range(4)]
        assert [r.status_code for r in replies] == [200, 200, 200, 429]
        refused = replies[-1]
        assert refused.headers["content-type"] == "application/json"
        assert int(refused.headers["retry-after"]) >= 1
        error = error_of(refused.content)
        assert error["code"] == "rate_limited" and error["retryable"] is True
        pushca = await http.post("/open-connection", json={"client": {"accountId": "olga"}})
        assert pushca.status_code == 429  # the alias shares the budget
        assert (await other.post("/v1/open-connection", json={"user": "olga"})).status_code == 200
        metrics = (await other.get("/metrics")).text
        assert 'pushgate_errors_total{code="rate_limited"}' in metrics
