"""POST /v1/notifications on connections of its own ("send connections", #20), black-box
against the real ``pushgate serve`` over raw sockets.

Every exchange in :data:`CASES` is compared byte for byte (the ``date`` header taken
out) with :data:`GOLDEN`: what ``pushgate serve`` answered before the guard served that
route itself (captured from uvicorn + ``FastSend`` at commit aee5417). The same request
sent after a ``GET`` on the same connection (which uvicorn and ``FastSend`` serve) must
get the same bytes as on a fresh connection, too.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect as ws_connect

from tests.integration.golden_send_replies import GOLDEN
from tests.support.ports import refused_port
from tests.support.rawhttp import at_eof, read_reply
from tests.support.rawws import OP_PING, OP_PONG, RawWs, frame
from tests.support.server import ServerProcess, running_server, server_env
from tests.support.waiting import wait_for

KEY = "test-key-0123456789abcdef"
LIMIT = 4096  # max_request_bytes
MAX_USERS = 3
REQUEST_TIMEOUT = 2.0
KEEPALIVE = 2.5  # http_keepalive_s (a fraction: it was cut to whole seconds)
QUIET = 0.6  # an exchange is over when nothing more came for this long (or at EOF)

Step = bytes | float  # bytes to write, or seconds to wait


def post(body: bytes, *, key: str | None = KEY, path: bytes = b"/v1/notifications",
         version: bytes = b"1.1", extra: bytes = b"", length: bool = True) -> bytes:
    """A complete POST request."""
    head = b"POST " + path + b" HTTP/" + version + b"\r\nHost: t\r\n"
    if key is not None:
        head += b"Authorization: Bearer " + key.encode() + b"\r\n"
    if length:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + extra + b"\r\n" + body


def note(user: str, **more: object) -> bytes:
    return orjson.dumps({"users": [user], "body": {"text": "hi", "user": user}, **more})


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


CHUNKED_HEAD = (b"POST /v1/notifications HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
                + KEY.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
GET_405 = b"PUT /v1/notifications HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
WS_UPGRADE = (b"GET /v1/ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def _head(body: bytes, **kw: object) -> tuple[bytes, bytes]:
    """A POST split into its head and its body."""
    request = post(body, **kw)  # type: ignore[arg-type]
    cut = request.index(b"\r\n\r\n") + 4
    return request[:cut], request[cut:]


_EXPECT_OK = _head(note("g-expect"), extra=b"Expect: 100-continue\r\n")
_EXPECT_401 = _head(note("g-expect-401"), key="wrong", extra=b"Expect: 100-continue\r\n")
_EXPECT_413 = _head(b"x" * (LIMIT + 1), extra=b"Expect: 100-continue\r\n")
_OVER = _head(b'{"users":["g-over"],"body":"' + b"x" * LIMIT + b'"}')
_SPLIT = post(note("g-split"))

#: name -> what the client writes (bytes) and waits (seconds), on one fresh connection
CASES: dict[str, Sequence[Step]] = {
    "ok": [post(note("g-ok"))],
    "ok-id-then-duplicate": [post(note("g-dup", id="m1")), 0.2, post(note("g-dup", id="m1"))],
    "ok-query-string": [post(note("g-query"), path=b"/v1/notifications?x=1")],
    "ok-percent-encoded-path": [post(note("g-pct"), path=b"/v1/%6eotifications")],
    "ok-filter": [post(b'{"filter":{"workspace":"w"},"body":"x"}')],
    "ok-trailing-spaces-in-key": [post(note("g-ows"), key=KEY + "  ")],
    "ok-second-key-header-ignored": [
        post(note("g-two-keys"), extra=b"Authorization: Bearer wrong\r\n")],
    "no-api-key": [post(note("g-nokey"), key=None)],
    "wrong-api-key": [post(note("g-wrong"), key="wrong")],
    "basic-auth": [post(note("g-basic"), key=None, extra=b"Authorization: Basic eHl6\r\n")],
    "empty-body": [post(b"")],
    "no-length-no-body": [post(b"", length=False)],
    "invalid-json": [post(b"{not json")],
    "invalid-utf8-json": [post(b'{"users":["\xff"],"body":1}')],
    "json-array": [post(b"[1,2]")],
    "users-not-a-list": [post(b'{"users":"g-x","body":1}')],
    "no-body-field": [post(b'{"users":["g-x"]}')],
    "unknown-field": [post(b'{"users":["g-x"],"body":1,"bogus":2}')],
    "too-many-users": [post(b'{"users":["a","b","c","d"],"body":1}')],
    "content-length-over-limit": [_OVER[0], 0.2, _OVER[1], 0.2, post(note("g-after-413"))],
    "content-length-over-limit-in-one-write": [b"".join(_OVER)],
    "chunked-ok": [CHUNKED_HEAD + chunked(b'{"users":["g-chunked"],', b'"body":1}')],
    "chunked-over-limit": [CHUNKED_HEAD + chunked(*[b"x" * 1000] * 5), 0.2,
                           post(note("g-after-chunked-413"))],
    "chunked-over-limit-then-stalls": [CHUNKED_HEAD + b"".join([b"3e8\r\n" + b"x" * 1000 + b"\r\n"] * 5)],
    "expect-100-continue": [_EXPECT_OK[0], 0.3, _EXPECT_OK[1]],
    "expect-100-continue-wrong-key": [_EXPECT_401[0], 0.3, _EXPECT_401[1], 0.2,
                                      post(note("g-after-expect-401"))],
    "expect-100-continue-over-limit": [_EXPECT_413[0]],
    "connection-close": [post(note("g-close"), extra=b"Connection: close\r\n")],
    "http-1.0": [post(note("g-http10"), version=b"1.0")],
    "http-1.0-keep-alive": [post(note("g-http10ka"), version=b"1.0",
                                  extra=b"Connection: keep-alive\r\n")],
    "error-with-connection-close": [post(b"[]", extra=b"Connection: close\r\n")],
    "keep-alive-three": [post(note("g-ka1")), 0.1, post(note("g-ka2")), 0.1,
                         post(note("g-ka3"))],
    "pipelined-three": [post(note("g-pipe1")) + post(note("g-pipe2")) + post(note("g-pipe3"))],
    "pipelined-mixed": [post(note("g-mix1")) + post(note("g-mix2"), key="wrong")
                        + post(b"{bad") + post(b"x" * (LIMIT + 1)) + post(note("g-mix3"))],
    "split-head-and-body": [_SPLIT[:20], 0.1, _SPLIT[20:60], 0.1, _SPLIT[60:-5], 0.1,
                            _SPLIT[-5:]],
    "then-another-route-in-a-new-read": [post(note("g-then-get")), 0.2, GET_405],
    "another-route-first-then-a-send": [GET_405, 0.2, post(note("g-get-then"))],
    "upgrade-header-on-the-send-route": [post(b"", extra=b"Connection: Upgrade\r\n"
                                              b"Upgrade: websocket\r\n")],
    "expect-100-continue-body-in-the-same-write": [b"".join(
        _head(note("g-expect-same"), extra=b"Expect: 100-continue\r\n"))],
    "pipelined-expect-100-continue": [post(note("g-pipe-expect1")) + b"".join(
        _head(note("g-pipe-expect2"), extra=b"Expect: 100-continue\r\n"))],
    "wrong-api-key-with-connection-close": [
        post(note("g-401-close"), key="wrong", extra=b"Connection: close\r\n")],
    "content-length-over-limit-with-connection-close": [b"".join(
        _head(b"x" * (LIMIT + 1), extra=b"Connection: close\r\n"))],
    "pipelined-connection-close-in-the-middle": [
        post(note("g-pc1")) + post(note("g-pc2"), extra=b"Connection: close\r\n")
        + post(note("g-pc3"))],
    "http-1.0-error": [post(b"{bad", version=b"1.0")],
    "expect-100-continue-chunked": [
        CHUNKED_HEAD.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"), 0.3,
        chunked(b'{"users":["g-expect-chunked"],', b'"body":1}')],
    "expect-100-continue-chunked-over-limit": [
        CHUNKED_HEAD.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"), 0.3,
        chunked(*[b"x" * 1000] * 5), 0.2, post(note("g-after-expect-chunked-413"))],
    "content-length-with-leading-zeros": [
        post(b"", length=False, extra=b"Content-Length: 00%d\r\n" % len(note("g-zeros")))
        + note("g-zeros")],
    "header-spacing-and-case": [
        b"POST /v1/notifications HTTP/1.1\r\nhost: t\r\nauthorization:bearer " + KEY.encode()
        + b"\r\nCONTENT-LENGTH:   %d  \r\n\r\n" % len(note("g-case")) + note("g-case")],
    "head-in-tiny-writes": [post(note("g-tiny"))[i:i + 3]
                            for i in range(0, len(post(note("g-tiny"))), 3)],
    "websocket-upgrade-elsewhere": [WS_UPGRADE.replace(b"/v1/ws", b"/elsewhere")],
    "websocket-upgrade-without-key": [WS_UPGRADE.replace(
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b"")],
}

_DATE = re.compile(rb"\r\ndate: [^\r]*")
# a send without id gets a generated report id (32 characters): compared as this one
_GENERATED_REPORT = re.compile(rb'"report":"r-[0-9a-f]{12}-[0-9a-f]{8}-[0-9a-f]{8}"')
GENERATED_REPORT = b'"report":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"'


def normalized(data: bytes) -> bytes:
    """Without date headers, generated report ids as :data:`GENERATED_REPORT`."""
    return _GENERATED_REPORT.sub(GENERATED_REPORT, _DATE.sub(b"", data))


async def exchange(port: int, steps: Sequence[Step], quiet: float = QUIET
                   ) -> tuple[bytes, bool]:
    """Write ``steps`` on a fresh connection, then read until EOF or ``quiet`` seconds of
    silence: (what came, date headers taken out; whether the server closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got = bytearray()
    eof = False

    async def read() -> None:
        nonlocal eof
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    eof = True
                    return
                got.extend(data)
        except (ConnectionResetError, BrokenPipeError):
            eof = True

    reading = asyncio.create_task(read())
    try:
        for step in steps:
            if isinstance(step, float):
                await asyncio.sleep(step)
            else:
                writer.write(step)
                try:
                    await writer.drain()
                except (ConnectionResetError, BrokenPipeError):
                    break
        seen = -1
        while not eof and len(got) != seen:
            seen = len(got)
            await asyncio.wait({reading}, timeout=quiet)
    finally:
        reading.cancel()
        writer.close()
    return normalized(bytes(got)), eof


def golden_env() -> dict[str, str]:
    return {"PUSHGATE_API_KEYS": KEY, "PUSHGATE_MAX_REQUEST_BYTES": str(LIMIT),
            "PUSHGATE_MAX_USERS_PER_SEND": str(MAX_USERS),
            "PUSHGATE_REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT),
            "PUSHGATE_HTTP_KEEPALIVE_S": str(KEEPALIVE),
            "PUSHGATE_MAX_CONNECTIONS_PER_IP": "0", "PUSHGATE_CONNECT_RATE_PER_IP": "0"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("send"), **golden_env()) as s:
        yield s


async def capture(port: int) -> dict[str, tuple[bytes, bool]]:
    """Every case's exchange (for :data:`GOLDEN`)."""
    return {name: await exchange(port, steps) for name, steps in CASES.items()}


# -- byte for byte as before ----------------------------------------------------------------


def test_every_case_has_its_golden_reply() -> None:
    assert set(CASES) == set(GOLDEN)


GOT_405 = (b"HTTP/1.1 405 Method Not Allowed\r\nserver: uvicorn\r\ncontent-length: 88\r\n"
           b"content-type: application/json\r\nallow: GET, HEAD, POST\r\n\r\n"
           b'{"error":{"code":"method_not_allowed","message":"Method Not Allowed",'
           b'"retryable":false}}')


def _other_users(data: bytes) -> bytes:
    return data.replace(b'"g-', b'"u-')


def _after_a_get(steps: Sequence[Step]) -> list[Step]:
    """``steps`` behind a request uvicorn serves (which makes the connection uvicorn's,
    and the send FastSend's), for other users."""
    return [GET_405, 0.2, *[s if isinstance(s, float) else _other_users(s) for s in steps]]


@pytest.fixture(scope="module")
def replies(srv: ServerProcess) -> dict[tuple[str, str], tuple[bytes, bool]]:
    """Every case on a fresh connection ("send") and behind a GET ("asgi"), all at once."""
    async def run() -> dict[tuple[str, str], tuple[bytes, bool]]:
        keys = [(path, name) for path in ("send", "asgi") for name in CASES]
        got = await asyncio.gather(*(
            exchange(srv.port, CASES[name] if path == "send" else _after_a_get(CASES[name]))
            for path, name in keys))
        return dict(zip(keys, got, strict=True))

    return asyncio.run(run())


@pytest.mark.parametrize("name", list(CASES))
def test_replies_on_a_send_connection_are_byte_identical_to_before(
        replies: dict[tuple[str, str], tuple[bytes, bool]], name: str) -> None:
    assert replies["send", name] == GOLDEN[name]


@pytest.mark.parametrize("name", list(CASES))
def test_the_asgi_path_answers_the_same(
        replies: dict[tuple[str, str], tuple[bytes, bool]], name: str) -> None:
    got, closed = GOLDEN[name]
    assert replies["asgi", name] == (GOT_405 + _other_users(got), closed)


# -- router errors (cluster mode, no router reachable) -----------------------------------------

ROUTER_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\nserver: uvicorn\r\ncontent-length: 110\r\n"
    b"content-type: application/json\r\nretry-after: 1\r\n\r\n"
    b'{"error":{"code":"router_unavailable","message":"no router is reachable; try again '
    b'shortly","retryable":true}}')


async def test_router_errors_are_the_same_reply_on_both_paths(tmp_path: Path) -> None:
    """What pushgate answered before (uvicorn + FastSend), on a send connection and
    behind a GET: 503 router_unavailable with Retry-After, and connection: close kept."""
    with refused_port() as port, running_server(tmp_path, **golden_env(),
                                                PUSHGATE_ROUTERS=f"127.0.0.1:{port}") as hub:
        for steps, prefix in (([post(note("r-1"))], b""),
                              ([GET_405, 0.2, post(note("r-1"))], GOT_405)):
            got, _ = await exchange(hub.port, steps)
            assert got == prefix + ROUTER_UNAVAILABLE
        got, closed = await exchange(hub.port, [post(note("r-2"), extra=b"Connection: close\r\n")])
        assert closed and got == ROUTER_UNAVAILABLE.replace(
            b"retry-after: 1\r\n", b"retry-after: 1\r\nconnection: close\r\n")


# -- keep-alive, pipelining, other routes ----------------------------------------------------


def seqs(body: bytes) -> list[int]:
    return [r["seq"] for r in orjson.loads(body)["results"]]


async def events_of(srv: ServerProcess, user: str) -> list[object]:
    async with srv.http() as http:
        r = await http.get(f"/v1/users/{user}/events", params={"limit": 1000})
        if r.status_code == 404 and r.json()["error"]["code"] == "unknown_user":
            return []
        assert r.status_code == 200, r.text
        return [e["body"] for e in r.json()["events"]]


async def test_many_sends_on_one_keep_alive_connection(srv: ServerProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        for i in range(300):
            writer.write(post(orjson.dumps({"users": ["k-many"], "body": i})))
            status, headers, body = await read_reply(reader)
            assert (status, seqs(body)) == (200, [i + 1])
            assert "connection" not in headers
        assert not await at_eof(reader, 0.3)  # still open
    finally:
        writer.close()
    assert await events_of(srv, "k-many") == list(range(300))


@pytest.mark.parametrize("piece", [0, 7, 1000], ids=["one-write", "7-byte-pieces", "1000-byte"])
async def test_pipelined_sends_are_answered_in_order(srv: ServerProcess, piece: int) -> None:
    """More than MAX_WAITING at once (the guard stops reading while they wait), errors
    among them, the heads and bodies cut anywhere: every reply, in order, and the
    sends stored in that order."""
    user = f"k-pipe-{piece}"
    requests = [post(orjson.dumps({"users": [user], "body": i})) if i % 10 != 3
                else post(b"{bad") for i in range(60)]
    data = b"".join(requests)
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        for i in range(0, len(data), piece or len(data)):
            writer.write(data[i:i + (piece or len(data))])
            await writer.drain()
        stored = 0
        for i in range(60):
            status, _, body = await read_reply(reader)
            if i % 10 == 3:
                assert status == 400 and orjson.loads(body)["error"]["field"] == "body"
            else:
                stored += 1
                assert (status, seqs(body)) == (200, [stored]), i
    finally:
        writer.close()
    assert await events_of(srv, user) == [i for i in range(60) if i % 10 != 3]


async def test_other_routes_after_sends_in_a_new_read_are_served(srv: ServerProcess) -> None:
    """The normal case: a request to another route after the replies (its own read).
    uvicorn serves the connection from then on, sends included (FastSend)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        for i in range(3):
            writer.write(post(orjson.dumps({"users": ["k-then"], "body": i})))
            assert (await read_reply(reader))[0] == 200
        writer.write(b"GET /v1/users/k-then/events HTTP/1.1\r\nHost: t\r\n"
                     b"Authorization: Bearer " + KEY.encode() + b"\r\n\r\n")
        status, _, body = await read_reply(reader)
        assert status == 200 and [e["body"] for e in orjson.loads(body)["events"]] == [0, 1, 2]
        writer.write(post(orjson.dumps({"users": ["k-then"], "body": 3})) + GET_405)
        assert [(await read_reply(reader))[0] for _ in range(2)] == [200, 405]
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert (await read_reply(reader))[0] == 200
        assert await at_eof(reader, 5)
    finally:
        writer.close()


@pytest.mark.parametrize("before", [1, 3, 0], ids=["one-send", "three-sends", "a-401"])
async def test_another_route_pipelined_behind_a_send_is_a_400_and_the_connection_ends(
        srv: ServerProcess, before: int) -> None:
    """Its bytes follow a send's in the same read: 400 invalid_request naming the problem
    after the replies before it, and the connection is closed."""
    user = f"k-refused-{before}"
    sends = [post(note(user)) for _ in range(before)] or [post(note(user), key="wrong")]
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        writer.write(b"".join(sends) + GET_405 + post(note(user)))
        statuses = [(await read_reply(reader))[0] for _ in sends]
        assert statuses == ([200] * before or [401])
        status, headers, body = await read_reply(reader)
        assert (status, headers["connection"], headers["content-type"]) == \
            (400, "close", "application/json")
        error = orjson.loads(body)["error"]
        assert error["code"] == "invalid_request" and error["retryable"] is False
        assert error["message"].startswith("PUT request pipelined behind POST /v1/notifications")
        assert await at_eof(reader, 5)  # and the send after it was not served
    finally:
        writer.close()
    assert len(await events_of(srv, user)) == before


def _bad_second_send(user: str) -> bytes:
    """A second send whose chunked body is malformed (after its head)."""
    return CHUNKED_HEAD + b"zz\r\n" + note(user)


@pytest.mark.parametrize(("behind", "message", "field"), [
    (lambda user: b"GARBAGE\r\n\r\n", "malformed HTTP request: Invalid method encountered",
     None),
    (lambda user: post(note(user)).replace(b"Content-Length: ", b"Content-Length: x"),
     "malformed HTTP request: Invalid character in Content-Length", "Content-Length"),
    (_bad_second_send, "malformed HTTP request: Invalid character in chunk size", None),
], ids=["garbage", "bad-content-length", "bad-chunked-body"])
@pytest.mark.parametrize("before", [1, 2])
async def test_malformed_bytes_pipelined_behind_sends_are_a_400_after_their_replies(
        srv: ServerProcess, behind: Any, message: str, field: str | None,
        before: int) -> None:
    """Complete sends, then bytes llhttp rejects, in one write: each send's 200 first
    (the sends are stored), then the JSON 400 for the malformed part, then the close;
    the malformed request is not served."""
    user = f"k-bad-behind-{before}-{len(message)}"
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        writer.write(b"".join(post(note(user)) for _ in range(before)) + behind(user))
        for i in range(before):
            status, headers, body = await read_reply(reader)
            assert (status, seqs(body)) == (200, [i + 1])
            assert "connection" not in headers
        status, headers, body = await read_reply(reader)
        assert (status, headers["connection"], headers["content-type"]) == \
            (400, "close", "application/json")
        error = {"code": "invalid_request", "message": message, "retryable": False}
        if field is not None:
            error["field"] = field
        assert orjson.loads(body) == {"error": error}
        assert await at_eof(reader, 5)
    finally:
        writer.close()
    assert len(await events_of(srv, user)) == before


async def test_an_idle_send_connection_is_closed_after_http_keepalive(
        srv: ServerProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        writer.write(post(note("k-idle")))
        assert (await read_reply(reader))[0] == 200
        answered = time.monotonic()
        assert await at_eof(reader, KEEPALIVE + 5)
        assert KEEPALIVE - 0.1 <= time.monotonic() - answered < KEEPALIVE + 2
    finally:
        writer.close()


async def test_a_slow_body_of_a_later_send_is_408(srv: ServerProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        writer.write(post(note("k-slow")))
        assert (await read_reply(reader))[0] == 200
        head, body = _head(note("k-slow"))
        writer.write(head + body[:5])
        started = time.monotonic()
        status, _headers, reply = await read_reply(reader, REQUEST_TIMEOUT + 5)
        assert (status, orjson.loads(reply)["error"]["code"]) == (408, "request_timeout")
        assert time.monotonic() - started >= REQUEST_TIMEOUT - 0.1
        assert await at_eof(reader, 5)
    finally:
        writer.close()


@pytest.mark.parametrize("head", [
    b"POST /v1/notifications HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\n",  # no key
    b"POST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\n",
    b"POST /v1/users/k-early/read HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\n",
], ids=["send-401", "unknown-path-404", "read-401"])
async def test_a_request_answered_before_its_body_gets_no_second_reply(
        srv: ServerProcess, head: bytes) -> None:
    """Answered from its head (401, 404) while its body never completes: at the body
    deadline the connection just ends — a 408 behind the first reply would be read as the
    answer to the client's next request on the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        writer.write(head + b'{"a"')
        status, _headers, _body = await read_reply(reader)
        assert status in (401, 404)
        started = time.monotonic()
        rest = await asyncio.wait_for(reader.read(), REQUEST_TIMEOUT + 5)  # up to EOF
        assert rest == b"", rest
        assert time.monotonic() - started >= REQUEST_TIMEOUT - 0.5  # the deadline ended it
    finally:
        writer.close()


# -- graceful shutdown -------------------------------------------------------------------------


async def test_sigterm_waits_for_a_send_in_flight_and_closes_idle_send_connections(
        tmp_path: Path) -> None:
    """uvicorn's graceful shutdown covers send connections: an idle one is closed at
    once, one whose request is under way gets its reply (``connection: close``) and the
    send is stored."""
    hub = ServerProcess(tmp_path / "data", server_env(**golden_env()))
    hub.start()
    writers: list[asyncio.StreamWriter] = []
    try:
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", hub.port)
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
        writers += (idle_writer, writer)
        idle_writer.write(post(note("s-idle")))
        assert (await read_reply(idle_reader))[0] == 200
        head, body = _head(note("s-in-flight"))
        writer.write(head + body[:10])
        await asyncio.sleep(0.2)
        stopping = asyncio.create_task(asyncio.to_thread(hub.stop))
        assert await at_eof(idle_reader, 3)  # the idle one: closed at once
        await asyncio.sleep(0.5)
        assert not stopping.done()  # waiting for the send under way
        writer.write(body[10:])
        status, headers, reply = await read_reply(reader)
        assert (status, headers["connection"], seqs(reply)) == (200, "close", [1])
        assert await at_eof(reader, 5)
        assert await stopping in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
        hub.start()
        assert len(await events_of(hub, "s-in-flight")) == 1
    finally:
        for w in writers:
            w.close()
        hub.stop()


# -- websockets through the guard ------------------------------------------------------------


async def test_a_websocket_upgrade_in_pieces_with_a_frame_behind_it(srv: ServerProcess) -> None:
    """The head in several reads and a ping in the same read as its end: the hub's
    websocket class gets the raw bytes (hello, then the pong)."""
    ws = await RawWs.open(srv.port)
    try:
        request = ws.upgrade_request(f"/v1/ws?token={srv.token('k-ws')}", "t",
                                     "dGhlIHNhbXBsZSBub25jZQ==")
        for i in range(0, len(request) - 10, 20):
            ws.write(request[i:min(i + 20, len(request) - 10)])
            await asyncio.sleep(0.02)
        ws.write(request[len(request) - 10:] + frame(OP_PING, b"hi"))
        hello = await ws.recv_json()
        assert hello["type"] == "hello"
        assert ws.head is not None and ws.head.startswith(b"HTTP/1.1 101 ")
        await wait_for(lambda: [f.payload for f in ws.frames if f.opcode == OP_PONG], 5,
                       "the pong", until=lambda pongs: pongs == [b"hi"])
        async with ws_connect(f"{srv.ws_url}?token={srv.token('k-ws2')}") as client:
            assert orjson.loads(await asyncio.wait_for(client.recv(), 10))["type"] == "hello"
    finally:
        ws.abort()


@pytest.mark.parametrize(("request_head", "status", "code"), [
    (b"GET /v1/ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
     426, "invalid_request"),
    (WS_UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0"), 505, "invalid_request"),
    (WS_UPGRADE.replace(b"GET ", b"CONNECT ", 1), 405, "method_not_allowed"),
], ids=["h2c-on-v1-ws", "websocket-over-http-1.0", "connect-v1-ws"])
async def test_a_first_request_that_is_not_a_websocket_upgrade_gets_a_json_error(
        srv: ServerProcess, request_head: bytes, status: int, code: str) -> None:
    """An upgrade to the websocket endpoint as a connection's first request goes to the
    hub's websocket class, which answers what is not a websocket upgrade with a JSON
    error and closes (before #20 uvicorn took an HTTP/1.0 websocket upgrade)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        writer.write(request_head)
        got, headers, body = await read_reply(reader)
        assert (got, headers["connection"]) == (status, "close")
        assert orjson.loads(body)["error"]["code"] == code
        if status == 426:  # RFC 9110: names the protocol; and the header at fault
            assert headers["upgrade"] == "websocket"
            assert orjson.loads(body)["error"]["field"] == "Upgrade"
        assert await at_eof(reader, 5)
    finally:
        writer.close()



async def test_a_get_of_v1_ws_without_an_upgrade_is_426_naming_the_headers(
        srv: ServerProcess) -> None:
    """Through a proxy that drops Upgrade/Connection (or in a browser tab) the endpoint
    says what is missing, instead of a 404 that suggests a wrong path."""
    async with srv.http() as http:
        r = await http.get("/v1/ws")
    assert (r.status_code, r.headers["upgrade"]) == (426, "websocket")
    error = r.json()["error"]
    assert (error["code"], error["field"], error["retryable"]) == \
        ("invalid_request", "Upgrade", False)
    assert "'Upgrade: websocket'" in error["message"]
    # Pushca's connection string likewise (it was a bare 404 "Not Found"), its token
    # never echoed
    token = srv.token("pc")
    async with srv.http() as http:
        r = await http.get(f"/{token}")
    assert (r.status_code, r.headers["upgrade"]) == (426, "websocket")
    assert r.json()["error"]["field"] == "Upgrade" and token not in r.text


_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
_UPGRADE_WS_LATE = b"Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"


@pytest.mark.parametrize(("request_bytes", "status", "code"), [
    (post(b"{}", path=b"/v1/ws", extra=_UPGRADE_WS_LATE), 405, "method_not_allowed"),
    (post(note("k-late"), extra=_UPGRADE_WS_LATE), 404, "not_found"),
    (post(b"{}", path=b"/v1/ws", extra=_UPGRADE_WS_LATE).replace(b"POST", b"GET", 1), 400,
     "invalid_request"),
    (WS_UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0"), 505, "invalid_request"),
    (b"GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n", 400, "invalid_request"),
], ids=["post-v1-ws-with-a-body", "send-with-websocket-upgrade", "get-v1-ws-with-a-body",
        "websocket-over-http-1.0", "http-2.0-request-line"])
async def test_an_upgrade_after_other_requests_is_refused_as_a_first_one(
        srv: ServerProcess, request_bytes: bytes, status: int, code: str) -> None:
    """nginx reuses its connections to a hub, so an upgrade is often not a connection's
    first request: it gets the same JSON refusal as a first one (it was closed without a
    reply — nginx's 502 and the hub out of its rotation — or, over HTTP/1.0, opened)."""
    for first in (_HEALTHZ, post(note("k-late-first"))):  # uvicorn's, or a send connection
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        try:
            writer.write(first)
            assert (await read_reply(reader))[0] == 200
            writer.write(request_bytes)
            got, headers, body = await read_reply(reader)
            assert (got, headers["content-type"]) == (status, "application/json"), body
            assert orjson.loads(body)["error"]["code"] == code
            assert await at_eof(reader, 5)
        finally:
            writer.close()
    assert await events_of(srv, "k-late") == []


async def test_a_websocket_upgrade_after_other_requests_opens_a_session(
        srv: ServerProcess) -> None:
    for first in (_HEALTHZ, post(note("k-late-first"))):  # uvicorn's, or a send connection
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        try:
            writer.write(first)
            assert (await read_reply(reader))[0] == 200
            writer.write(WS_UPGRADE.replace(b"GET /v1/ws ", b"GET /v1/ws?token=%s " %
                                            srv.token("k-late-ws").encode()))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 101 ")
        finally:
            writer.close()


# what Java's java.net.http.HttpClient adds to every request over http:// by default
# (HTTP/2 preferred), and `curl --http2`
_UPGRADE_H2C = (b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                b"HTTP2-Settings: AAEAAEAAAAIAAAABAAMAAABkAAQBAAAAAAUAAEAA\r\n")
_UPGRADE_WS = b"Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"


def _h2c_read(user: str) -> bytes:
    return (b"GET /v1/users/" + user.encode() + b"/events HTTP/1.1\r\nHost: t\r\n"
            b"Authorization: Bearer " + KEY.encode() + b"\r\n" + _UPGRADE_H2C + b"\r\n")


@pytest.mark.parametrize("first", [
    post(note("k-h2c-send"), extra=_UPGRADE_H2C),
    CHUNKED_HEAD[:-2] + _UPGRADE_H2C + b"\r\n" + chunked(note("k-h2c-send")),
    post(b'{"seqs": [1]}', path=b"/v1/users/k-h2c-send/read", extra=_UPGRADE_H2C),
    _h2c_read("k-h2c-send"),
    b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + _UPGRADE_H2C + b"\r\n",
], ids=["send", "chunked-send", "read-mark-with-a-body", "events", "healthz"])
@pytest.mark.parametrize("split", [False, True], ids=["one-write", "head-in-two-writes"])
async def test_an_h2c_upgrade_is_ignored_and_the_request_served_as_http_1_1(
        srv: ServerProcess, first: bytes, split: bool) -> None:
    """Java's HttpClient asks every first request over http:// to upgrade to h2c: the hub
    ignores the upgrade (RFC 9110 §7.8), answers the request as HTTP/1.1 (no 101) and
    keeps the connection for the next requests (a send and a read behind it)."""
    user = f"k-h2c-{len(first)}-{split}"
    async with srv.http() as http:  # an inbox for the read mark and the events read
        assert (await http.post("/v1/notifications", content=note("k-h2c-send"))
                ).status_code == 200
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        if split:
            cut = first.index(b"Upgrade: h2c") + 5
            writer.write(first[:cut])  # two segments (TCP_NODELAY): mostly two reads
            await writer.drain()
            writer.write(first[cut:])
        else:
            writer.write(first)
        status, headers, body = await read_reply(reader)
        assert status == 200 and "connection" not in headers, (status, body)
        writer.write(post(note(user)))
        status, headers, body = await read_reply(reader)
        assert (status, seqs(body)) == (200, [1])
        writer.write(_h2c_read(user).replace(_UPGRADE_H2C, b""))
        status, _, body = await read_reply(reader)
        assert status == 200 and [e["seq"] for e in orjson.loads(body)["events"]] == [1]
        assert not await at_eof(reader, 0.3)  # still open
    finally:
        writer.close()
    if first.startswith(b"POST /v1/notifications"):
        assert await events_of(srv, "k-h2c-send") != []


@pytest.mark.parametrize(("request_bytes", "status", "code", "message"), [
    (post(note("k-up-ws"), extra=_UPGRADE_WS), 404, "not_found",
     "no websocket endpoint at /v1/notifications; use /v1/ws"),
    (post(b"{}", path=b"/v1/ws", extra=_UPGRADE_WS), 405, "method_not_allowed",
     "not a websocket upgrade: unsupported HTTP method: POST"),
    (post(b"{}", path=b"/v1/ws", extra=_UPGRADE_WS).replace(b"POST", b"GET", 1), 400,
     "invalid_request", "not a websocket upgrade: unsupported request body"),
    (post(b"{}", path=b"/v1/ws", extra=_UPGRADE_H2C).replace(b"POST", b"GET", 1), 400,
     "invalid_request", "not a websocket upgrade: unsupported request body"),
], ids=["send-websocket", "post-v1-ws", "get-v1-ws-with-a-body", "h2c-v1-ws-with-a-body"])
async def test_a_first_request_that_is_an_upgrade_with_a_body_gets_a_json_error(
        srv: ServerProcess, request_bytes: bytes, status: int, code: str,
        message: str) -> None:
    """The websocket class cannot read a request with a body (it closed without a
    reply): the guard answers what that class answers the same head without a body,
    and nothing is served (the send is not stored)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        writer.write(request_bytes)
        got, headers, body = await read_reply(reader)
        assert (got, headers["connection"], headers["content-type"]) == \
            (status, "close", "application/json")
        assert orjson.loads(body) == {"error": {"code": code, "message": message,
                                                "retryable": False}}
        assert await at_eof(reader, 5)
    finally:
        writer.close()
    assert await events_of(srv, "k-up-ws") == []


if __name__ == "__main__":  # pragma: no cover - regenerating GOLDEN: see the docstring
    import sys

    print(repr(asyncio.run(capture(int(sys.argv[1])))))
