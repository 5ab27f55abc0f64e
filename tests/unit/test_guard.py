"""The HTTP connection guard in-process (pushgate/hub/guard.py, limits.py): per-IP
accounting and token buckets on a fake clock, and the guard protocol driven by hand over a fake
transport in front of uvicorn's real HttpToolsProtocol and a small ASGI app."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import uvicorn
from uvicorn.server import ServerState

from pushgate.hub.guard import guarded_http
from pushgate.hub.limits import ConnectionLimits, TrustedPeers, rate_limited_response
from pushgate.ratelimit import TokenBucket
from tests.support.waiting import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- token bucket and per-IP accounting --------------------------------------------------------


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate=10, burst=10, now=0.0)
    assert [bucket.take(0.0) for _ in range(10)] == [0.0] * 10
    assert bucket.take(0.0) == pytest.approx(0.1)  # the next token is due in 1/rate
    assert bucket.take(0.05) == pytest.approx(0.05)
    assert bucket.take(0.1) == 0.0
    assert not bucket.full(0.1)
    assert bucket.full(0.1 + 1.0)  # refilled after burst / rate
    assert bucket.take(100.0) == 0.0 and bucket.tokens == pytest.approx(9)  # capped at burst


def test_connections_per_ip_are_counted_and_released() -> None:
    limits = ConnectionLimits(max_connections=3, connect_rate=0, open_connection_rate=0)
    assert [limits.admit("10.1.1.1") for _ in range(3)] == [None] * 3
    assert limits.admit("10.1.1.1") == "too_many_connections"
    assert limits.admit("10.1.1.2") is None  # another address is not affected
    assert limits.open_connections("10.1.1.1") == 3  # the refusal counted nothing
    limits.release("10.1.1.1")
    assert limits.admit("10.1.1.1") is None
    for _ in range(5):  # never below zero
        limits.release("10.1.1.2")
    assert limits.open_connections("10.1.1.2") == 0
    assert limits.retry_after("too_many_connections") == 1


def test_connect_rate_per_ip() -> None:
    clock = Clock()
    limits = ConnectionLimits(max_connections=0, connect_rate=5, open_connection_rate=0,
                              clock=clock)
    assert [limits.admit("10.2.2.2") for _ in range(6)] == [None] * 5 + ["rate_limited"]
    assert limits.admit("10.2.2.3") is None
    clock.now += 0.2  # one token
    assert limits.admit("10.2.2.2") is None
    assert limits.admit("10.2.2.2") == "rate_limited"
    assert limits.open_connections("10.2.2.2") == 6  # admitted ones are counted
    assert limits.retry_after("rate_limited") == 1
    slow = ConnectionLimits(max_connections=0, connect_rate=0.25, open_connection_rate=0)
    assert slow.retry_after("rate_limited") == 4


def test_the_connection_count_is_checked_before_the_rate() -> None:
    """A connection refused for the count takes no token (a client at its limit that
    retries does not also exhaust its rate)."""
    clock = Clock()
    limits = ConnectionLimits(max_connections=2, connect_rate=3, open_connection_rate=0,
                              clock=clock)
    assert [limits.admit("10.3.3.3") for _ in range(5)] == \
        [None, None, "too_many_connections", "too_many_connections", "too_many_connections"]
    limits.release("10.3.3.3")
    assert limits.admit("10.3.3.3") is None  # the third token
    limits.release("10.3.3.3")
    assert limits.admit("10.3.3.3") == "rate_limited"


def test_trusted_proxies_and_socket_peers_are_exempt() -> None:
    limits = ConnectionLimits(max_connections=1, connect_rate=1, open_connection_rate=0,
                              trusted=["10.0.0.0/8", "192.168.1.7", "2001:db8::1", "unix:x"])
    for ip in ("10.9.8.7", "192.168.1.7", "2001:db8:0:0::1", "::ffff:10.1.2.3",
               "::ffff:192.168.1.7", None, ""):
        assert [limits.admit(ip) for _ in range(3)] == [None] * 3, ip
        assert limits.exempt(ip)
    assert len(limits) == 0  # nothing remembered for them
    assert limits.admit("192.168.1.8") is None
    assert limits.admit("192.168.1.8") == "too_many_connections"
    assert limits.admit("11.0.0.1") is None and not limits.exempt("11.0.0.1")
    everyone = ConnectionLimits(max_connections=1, connect_rate=1, open_connection_rate=0,
                                trusted=["*"])
    assert [everyone.admit("11.0.0.1") for _ in range(3)] == [None] * 3
    peers = TrustedPeers(["127.0.0.1", "fd00::/8", "not-an-ip"])
    assert "127.0.0.1" in peers and "fd12::3" in peers and "not-an-ip" in peers
    assert "127.0.0.2" not in peers and "fe80::1" not in peers and "junk" not in peers


def test_no_limits_remember_nothing() -> None:
    limits = ConnectionLimits(max_connections=0, connect_rate=0, open_connection_rate=0)
    for i in range(5000):
        assert limits.admit(f"10.4.{i // 256}.{i % 256}") is None
    assert len(limits) == 0
    assert limits.open_connection("10.4.0.1") == 0.0


def test_idle_addresses_are_forgotten() -> None:
    """Memory ~ addresses with open connections or a bucket that is not refilled yet."""
    clock = Clock()
    limits = ConnectionLimits(max_connections=10, connect_rate=10, open_connection_rate=0,
                              clock=clock)
    held = [f"10.5.0.{i}" for i in range(100)]
    for ip in held:
        assert limits.admit(ip) is None
    for round_ in range(20):  # 20 waves of 5,000 one-off clients, 2 s apart
        clock.now += 2.0
        for i in range(5000):
            ip = f"10.6.{round_}.{i}"
            assert limits.admit(ip) is None
            limits.release(ip)
        assert len(limits) <= 2 * 5000 + 1024 + len(held)
    assert all(limits.open_connections(ip) == 1 for ip in held)  # never forgotten
    clock.now += 2.0
    for i in range(3000):
        limits.admit(f"10.7.0.{i}")
    assert all(limits.open_connections(ip) == 1 for ip in held)


def test_open_connection_rate_per_client() -> None:
    clock = Clock()
    limits = ConnectionLimits(max_connections=0, connect_rate=0, open_connection_rate=2,
                              trusted=["10.0.0.0/8"], clock=clock)
    assert [limits.open_connection("10.8.8.8") for _ in range(2)] == [0.0, 0.0]
    assert limits.open_connection("10.8.8.8") == pytest.approx(0.5)
    assert limits.open_connection("172.16.0.1") == 0.0  # per client
    assert limits.open_connection(None) == 0.0
    clock.now += 0.5
    assert limits.open_connection("10.8.8.8") == 0.0
    for i in range(5000):  # refilled buckets are forgotten
        clock.now += 0.01
        limits.open_connection(f"172.17.{i // 256}.{i % 256}")
    assert limits.opens is not None and len(limits.opens.buckets) < 3000


# -- the guard protocol --------------------------------------------------------------------------


class FakeTransport(asyncio.Transport):
    def __init__(self, peer: str = "10.9.9.9") -> None:
        super().__init__()
        self.peer = peer
        self.out = bytearray()
        self.closed = self.eof = self.aborted = False
        self.protocol: Any = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": (self.peer, 40000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default)

    def write(self, data: Any) -> None:
        assert not self.eof, "write after write_eof"
        self.out += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def replies(self) -> list[tuple[int, bytes]]:
        """(status, body) of each response written."""
        out, data = [], bytes(self.out)
        while data:
            head, _, rest = data.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            out.append((status, rest[:length]))
            data = rest[length:]
        return out


class FakeWs(asyncio.Protocol):
    """Stands for uvicorn's websocket protocol class (``Config(ws=...)``)."""

    releases_connection_limits = False

    def __init__(self, **kwargs: Any) -> None:
        self.lost = False
        self.received = b""

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


class ReleasingWs(FakeWs):
    releases_connection_limits = True


seen: list[tuple[str, bytes]] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            seen.append((scope["path"], b"<disconnect>"))
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    seen.append((scope["path"], body))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


class Guard:
    """A guard protocol class on fake settings; :meth:`connect` makes one connection."""

    def __init__(self, *, header_timeout: float = 5.0, request_timeout: float = 5.0,
                 max_head: int = 1024, ws: type = FakeWs, **limits: Any) -> None:
        settings = SimpleNamespace(header_timeout_s=header_timeout,
                                   request_timeout_s=request_timeout, max_header_bytes=max_head,
                                   max_request_bytes=1 << 20)
        self.errors: list[str] = []
        self.limits = ConnectionLimits(limits.get("max_connections", 0),
                                       limits.get("connect_rate", 0), 0,
                                       trusted=limits.get("trusted", ()))
        node = SimpleNamespace(settings=settings, conn_limits=self.limits,
                               metrics=SimpleNamespace(error=self.errors.append))
        self.cls: Any = guarded_http(node, ws)  # type: ignore[arg-type]
        self.config = uvicorn.Config(app, ws=ws, log_config=None)
        self.state = ServerState()
        seen.clear()

    def connect(self, peer: str = "10.9.9.9") -> tuple[Any, FakeTransport]:
        transport = FakeTransport(peer)
        protocol = self.cls(config=self.config, server_state=self.state, app_state={})
        transport.protocol = protocol
        protocol.connection_made(transport)
        return protocol, transport


def head(size: int, path: bytes = b"/h", extra: bytes = b"") -> bytes:
    """A GET head of exactly ``size`` bytes."""
    start = b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"X-Pad: "
    pad = size - len(start) - 4
    assert pad >= 0
    return start + b"p" * pad + b"\r\n\r\n"


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_head_of_max_header_bytes_is_served_one_byte_more_is_431() -> None:
    guard = Guard(max_head=1024)
    protocol, transport = guard.connect()
    protocol.data_received(head(1024, b"/a"))
    await settle()
    assert seen == [("/a", b"")]
    assert transport.replies() == [(200, b"ok")]
    protocol.data_received(head(1025, b"/b"))  # next request on the same connection
    await settle()
    status, body = transport.replies()[-1]
    assert status == 431 and seen == [("/a", b"")]
    error = orjson.loads(body)["error"]
    assert error["code"] == "header_too_large" and error["retryable"] is False
    assert transport.eof and not transport.closed  # half-closed, waiting for the client
    assert guard.errors == ["header_too_large"]
    protocol.data_received(b"more of the head")  # dropped
    assert protocol.eof_received() is None  # the client closed: the transport closes


async def test_a_trusted_proxys_own_headers_do_not_count_against_the_head_limit() -> None:
    """Behind nginx a client's head of 16,332 bytes, within max_header_bytes, was a 431:
    the proxy adds X-Forwarded-For and the like. From a trusted proxy the head may be
    PROXY_HEAD_BYTES longer; from anyone else not."""
    from pushgate.hub.guard import PROXY_HEAD_BYTES

    guard = Guard(max_head=1024, trusted=["10.0.0.0/8"])
    for peer, served in (("10.1.2.3", True), ("192.0.2.1", False)):
        protocol, transport = guard.connect(peer)
        protocol.data_received(head(1024 + PROXY_HEAD_BYTES, b"/p"))
        await settle()
        assert [s for s, _ in transport.replies()] == ([200] if served else [431]), peer
    protocol, transport = guard.connect("10.1.2.3")
    protocol.data_received(head(1024 + PROXY_HEAD_BYTES + 1, b"/p"))
    await settle()
    [(status, body)] = transport.replies()
    assert status == 431 and orjson.loads(body)["error"]["message"] == \
        "the request head is over 1024 bytes (max_header_bytes)"


@pytest.mark.parametrize("step", [1, 7, 100, 1000])
async def test_the_head_limit_holds_over_any_chunking(step: int) -> None:
    for size, served in ((1024, True), (1025, False)):
        guard = Guard(max_head=1024)
        protocol, transport = guard.connect()
        data = head(size, b"/c") + b"GET /d HTTP/1.1\r\nHost: t\r\n\r\n"
        for i in range(0, len(data), step):
            protocol.data_received(data[i:i + step])
        await settle()
        statuses = [s for s, _ in transport.replies()]
        assert statuses == ([200, 200] if served else [431]), (size, step)


async def test_a_body_in_the_same_read_as_a_small_head_is_not_counted_as_head() -> None:
    guard = Guard(max_head=1024)
    protocol, transport = guard.connect()
    body = b"x" * 40000
    protocol.data_received(b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                           % len(body) + body)
    await wait_for(lambda: seen, 2, "the request")
    assert seen == [("/p", body)]
    assert transport.replies() == [(200, b"ok")]


async def test_pipelined_requests_over_the_head_limit_in_one_read_are_served() -> None:
    guard = Guard(max_head=1024)
    protocol, transport = guard.connect()
    requests = b"".join(head(300, b"/r%d" % i) for i in range(10))  # 3,000 bytes
    protocol.data_received(requests)
    await wait_for(lambda: len(transport.replies()), 2, "10 replies", until=lambda n: n == 10)
    assert [p for p, _ in seen] == [f"/r{i}" for i in range(10)]


@pytest.mark.parametrize(("request_head", "field"), [
    (b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
     "Transfer-Encoding"),
    (b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
     "Content-Length"),
    (b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
     "Content-Length"),
    (b"GET http://[::1 HTTP/1.1\r\nHost: t\r\n\r\n", None),  # uvicorn: text/plain 400
    (b"CONNECT example.com:443 HTTP/1.1\r\nHost: t\r\n\r\n", None),
    (b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", None),
])
async def test_malformed_requests_get_the_json_400_before_uvicorn_sees_them(
        request_head: bytes, field: str | None) -> None:
    guard = Guard()
    protocol, transport = guard.connect()
    protocol.data_received(request_head)
    await settle()
    assert seen == []  # the app never ran
    [(status, body)] = transport.replies()
    error = orjson.loads(body)["error"]
    assert status == 400 and error["code"] == "invalid_request"
    assert error.get("field") == field
    assert error["message"].startswith("malformed HTTP request: ")
    assert b"content-type: application/json" in transport.out


async def test_head_timeout_408_and_silent_close_when_nothing_came() -> None:
    guard = Guard(header_timeout=0.05)
    idle, idle_transport = guard.connect()
    slow, slow_transport = guard.connect()
    slow.data_received(b"GET /v1/ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n")
    await wait_for(lambda: slow_transport.eof and idle_transport.closed, 2, "both ended")
    [(status, body)] = slow_transport.replies()
    assert status == 408 and orjson.loads(body)["error"]["code"] == "request_timeout"
    assert orjson.loads(body)["error"]["retryable"] is True
    assert idle_transport.out == b"" and not idle_transport.eof
    # a client that never closes its side is dropped after the linger
    slow.connection_lost(None)
    idle.connection_lost(None)


async def test_the_head_deadline_runs_from_the_request_start_not_per_byte() -> None:
    guard = Guard(header_timeout=0.2)
    protocol, transport = guard.connect()
    loop = asyncio.get_running_loop()
    started = loop.time()
    for byte in b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: 1234567890":
        if transport.eof:
            break
        protocol.data_received(bytes([byte]))
        await asyncio.sleep(0.01)
    assert transport.eof and [s for s, _ in transport.replies()] == [408]
    assert 0.19 <= loop.time() - started < 0.6


async def test_keep_alive_requests_get_a_fresh_head_deadline() -> None:
    guard = Guard(header_timeout=0.15)
    protocol, transport = guard.connect()
    for i in range(4):  # 4 x 0.1 s > header_timeout: idle time between requests is not head time
        await asyncio.sleep(0.1)
        protocol.data_received(head(200, b"/k%d" % i))
        await settle()
    assert [s for s, _ in transport.replies()] == [200] * 4 and not transport.eof


async def test_body_timeout_408_and_the_app_sees_a_disconnect() -> None:
    guard = Guard(request_timeout=0.1)
    protocol, transport = guard.connect()
    protocol.data_received(b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
    await wait_for(lambda: transport.eof, 2, "the 408")
    [(status, body)] = transport.replies()
    assert status == 408 and "body" in orjson.loads(body)["error"]["message"]
    await wait_for(lambda: seen, 2, "the app's disconnect")
    assert seen == [("/slow", b"<disconnect>")]
    assert guard.errors == ["request_timeout"]


async def test_lingering_connection_is_aborted_if_the_client_never_closes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pushgate.hub.guard.LINGER_S", 0.05)
    guard = Guard(header_timeout=0.05)
    protocol, transport = guard.connect()
    protocol.data_received(b"GET / HTTP/1.1\r\n")
    await wait_for(lambda: transport.aborted, 2, "the abort after the linger")
    assert [s for s, _ in transport.replies()] == [408]


async def test_refused_connections_get_429_and_are_released() -> None:
    guard = Guard(max_connections=2)
    first, _ = guard.connect("10.10.0.1")
    guard.connect("10.10.0.1")
    refused, t3 = guard.connect("10.10.0.1")
    [(status, body)] = t3.replies()
    # half-closed, lingering for the client's end (a close with its request unread was
    # a reset that lost the 429)
    assert status == 429 and t3.eof and not t3.closed
    assert refused.eof_received() is None  # the client closed: the transport closes
    assert orjson.loads(body)["error"] == {
        "code": "too_many_connections", "retryable": True,
        "message": "too many open connections from this address (at most 2); retry later"}
    assert b"retry-after: 1\r\n" in t3.out and b"connection: close\r\n" in t3.out
    refused.connection_lost(None)  # not counted: releases nothing
    assert guard.limits.open_connections("10.10.0.1") == 2
    _, t4 = guard.connect("10.10.0.2")
    assert t4.out == b""
    first.connection_lost(None)
    assert guard.limits.open_connections("10.10.0.1") == 1
    _, t5 = guard.connect("10.10.0.1")
    assert t5.out == b"" and guard.errors == ["too_many_connections"]


UPGRADE = (b"GET /v1/ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


async def test_an_upgraded_connection_is_released_by_the_websocket_side() -> None:
    guard = Guard(max_connections=1, header_timeout=0.05)
    protocol, transport = guard.connect("10.11.0.1")
    protocol.data_received(UPGRADE)
    ws = transport.get_protocol()
    shim = ws
    assert type(ws).__name__ == "ReleaseOnLost"  # FakeWs does not release by itself
    ws = ws.protocol
    assert isinstance(ws, FakeWs) and ws.received.startswith(b"GET /v1/ws HTTP/1.1\r\n")
    await asyncio.sleep(0.1)  # past header_timeout: the guard is out of the way
    assert transport.out == b"" and not transport.eof
    shim.data_received(b"frame")
    assert ws.received.endswith(b"frame")
    assert guard.limits.admit("10.11.0.1") == "too_many_connections"  # still counted
    shim.connection_lost(None)
    assert ws.lost and guard.limits.open_connections("10.11.0.1") == 0

    guard = Guard(max_connections=1, ws=ReleasingWs)
    protocol, transport = guard.connect("10.11.0.2")
    protocol.data_received(UPGRADE)
    assert isinstance(transport.get_protocol(), ReleasingWs)  # no shim: it releases itself
    assert guard.limits.open_connections("10.11.0.2") == 1
    guard.limits.release_for(transport)
    assert guard.limits.open_connections("10.11.0.2") == 0


async def test_a_non_websocket_upgrade_after_a_request_is_served_then_closed_at_the_deadline(
        ) -> None:
    """uvicorn serves the connection (its first request was a GET): uvicorn serves an
    upgrade it does not take as plain HTTP, and the guard closes at the request deadline."""
    guard = Guard(request_timeout=0.1)
    protocol, transport = guard.connect()
    protocol.data_received(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n")
    await settle()
    protocol.data_received(b"GET /h2 HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\n"
                           b"Connection: Upgrade\r\n\r\n")
    await wait_for(lambda: transport.closed, 2, "the close")
    assert seen == [("/first", b""), ("/h2", b"")]
    assert [s for s, _ in transport.replies()] == [200, 200]


@pytest.mark.parametrize("request_head", [
    b"GET /h2 HTTP/1.1\r\nHost: t\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\n",
    b"GET /v1/ws HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
    b"CONNECT /h2 HTTP/1.1\r\nHost: t\r\n\r\n",
], ids=["websocket-elsewhere", "h2c-on-v1-ws", "connect"])
async def test_a_first_request_that_is_a_websocket_upgrade_goes_to_the_websocket_class(
        request_head: bytes) -> None:
    """The websocket class answers it (the hub's: a JSON 4xx off /v1/ws, or for what is
    not a websocket upgrade there); uvicorn's protocol is never made."""
    guard = Guard(ws=ReleasingWs)
    protocol, transport = guard.connect()
    request = request_head + b"PRI * HTTP/2.0"
    protocol.data_received(request)
    ws = transport.get_protocol()
    assert isinstance(ws, ReleasingWs) and ws.received == request
    assert protocol.inner is None and seen == []


H2C_FIRST = (b"POST /h2 HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
             b"upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
             b"Content-Length: 4\r\n\r\nbody")


@pytest.mark.parametrize("step", [0, 1, 7, 40], ids=lambda n: f"pieces-of-{n}" if n else "one")
async def test_a_first_request_asking_for_h2c_is_served_as_plain_http(step: int) -> None:
    """Java's HttpClient and ``curl --http2`` ask to upgrade to h2c: the upgrade is
    ignored, uvicorn serves the request with its body, and the connection stays a
    keep-alive HTTP/1.1 one (the next request is served too)."""
    guard = Guard(ws=ReleasingWs)
    protocol, transport = guard.connect()
    data = H2C_FIRST + b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n"
    for i in range(0, len(data), step or len(data)):
        protocol.data_received(data[i:i + (step or len(data))])
    await wait_for(lambda: len(seen) == 2, 2, "both requests served")
    assert seen == [("/h2", b"body"), ("/next", b"")]
    assert [s for s, _ in transport.replies()] == [200, 200]
    assert transport.get_protocol() is protocol and not transport.closed


def limits_section() -> str:
    """docs/http-api.md, "Connection limits and timeouts"."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "http-api.md").read_text()
    section = doc[doc.index("### Connection limits and timeouts"):]
    return section[:section.index("\n## ")]


async def test_the_docs_show_the_replies_the_guard_writes() -> None:
    """The 429 example is byte for byte what a refused connection gets with the default
    limit, and the example bodies are the guard's (with the default settings)."""
    section = limits_section()
    guard = Guard(max_connections=1000, max_head=16384, request_timeout=0.05)
    for _ in range(1000):
        guard.connect("10.12.0.1")
    _, refused = guard.connect("10.12.0.1")
    example = section[section.index("```http\n") + 8:]
    reply_head, reply_body = example[:example.index("\n```")].split("\n\n")
    assert (reply_head.replace("\n", "\r\n") + "\r\n\r\n" + reply_body).encode() == \
        bytes(refused.out)

    documented = [orjson.loads(line)["error"] for line in
                  section[section.index("```json\n") + 8:].split("\n```")[0].splitlines()]
    written = []
    for request in (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked"
                    b"\r\n\r\n", b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\n", head(16385)):
        protocol, transport = guard.connect("10.12.0.2")
        protocol.data_received(request)
        await wait_for(lambda t=transport: t.eof, 2, "the reply")  # type: ignore[misc]
        written.append(orjson.loads(transport.replies()[0][1])["error"])
    written[1]["message"] = written[1]["message"].replace("0.05 s", "30 s")
    response = rate_limited_response(0.5, "open-connection requests")
    written.append(orjson.loads(bytes(response.body))["error"])
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    assert documented == written
