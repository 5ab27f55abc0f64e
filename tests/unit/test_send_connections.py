"""Send connections in-process (pushgate/hub/guard.py, sendconn.py, sendpath.py): what
the black-box tests (tests/integration/test_send_connections.py) cannot provoke — an
unexpected exception in a send, backpressure and uvicorn's shutdown call — on the real
hub node, through a real uvicorn server or over a fake transport."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from uvicorn.server import ServerState

from pushgate.hub.app import create_app
from pushgate.hub.connection import connection_class
from pushgate.hub.fastpath import FastSend
from pushgate.hub.guard import guarded_http
from pushgate.hub.node import HubNode
from pushgate.hub.sendconn import MAX_WAITING
from pushgate.settings import Settings
from tests.support.waiting import wait_for
from tests.unit.test_guard import FakeTransport

KEY = "k" * 24
SEND = (b"POST /v1/notifications HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + KEY.encode()
        + b"\r\nContent-Length: %d\r\n\r\n")


def send(user: str, **extra: Any) -> bytes:
    body = orjson.dumps({"users": [user], "body": 1, **extra})
    return SEND % len(body) + body


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[HubNode]:
    settings = Settings(data_dir=tmp_path, jwt_secret="s" * 32, api_keys=[KEY],
                        max_connections_per_ip=0, connect_rate_per_ip=0)
    app = create_app(settings)
    gw: HubNode = app.state.node
    gw.app = app  # type: ignore[attr-defined]
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def exchange(port: int, data: bytes, first: bytes = b"") -> tuple[bytes, bool]:
    """``first`` (answered), then ``data``: what came (date taken out), and whether the
    server closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if first:
            writer.write(first)
            await reader.readuntil(b"\r\n\r\n")
        writer.write(data)
        got = b""
        async with asyncio.timeout(5):
            while chunk := await reader.read(65536):
                got += chunk
        return re.sub(rb"\r\ndate: [^\r]*", b"", got), True
    except TimeoutError:
        return got, False
    finally:
        writer.close()


async def test_an_unexpected_exception_is_the_same_json_500_on_every_path(
        node: HubNode, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented JSON error body, 500 ``internal`` and retryable (no connection:
    close header), the connection closed after it and the traceback logged, on a send
    connection as on the ASGI path; counted in the error metric."""
    ws = connection_class(node)
    config = uvicorn.Config(FastSend(node.app, node), host="127.0.0.1",  # type: ignore[attr-defined]
                            port=0, http=guarded_http(node, ws), ws=ws, lifespan="off",
                            log_config=None, access_log=False)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    await wait_for(lambda: server.started, 10, "the server")
    port = server.servers[0].sockets[0].getsockname()[1]

    async def boom(request: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(node.router, "send", boom)
    monkeypatch.setattr(node.router, "read_state", boom)
    try:
        with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
            fast = await exchange(port, send("u1"))
            asgi = await exchange(port, send("u1"), first=b"GET /healthz HTTP/1.1\r\n\r\n")
            # any other route: the Starlette app's handler gives the same answer
            other = await exchange(port, b"GET /v1/users/u1/read-state HTTP/1.1\r\nHost: t\r\n"
                                   b"Authorization: Bearer " + KEY.encode() + b"\r\n\r\n")
    finally:
        server.should_exit = True
        await serving
    body = (b'{"error":{"code":"internal","message":"unexpected server error (logged); retry '
            b'(a send with the same id is not stored twice)","retryable":true}}')
    expected = (b"HTTP/1.1 500 Internal Server Error\r\nserver: uvicorn\r\n"
                b"content-length: %d\r\ncontent-type: application/json\r\n\r\n" % len(body)
                + body)
    assert fast == (expected, True)
    assert asgi[0].endswith(expected) and asgi[1]
    assert other == (expected, True)
    assert node.metrics.snapshot()['pushgate_errors_total{code="internal"}'] == 3
    failures = [r for r in caplog.records if r.getMessage().startswith(
        "Exception in ASGI application")]
    assert len(failures) == 3 and all(r.exc_info and "boom" in str(r.exc_info[1])
                                      for r in failures)


class PausingTransport(FakeTransport):
    def __init__(self) -> None:
        super().__init__()
        self.reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def guard_on(node: HubNode, state: ServerState | None = None) -> tuple[Any, PausingTransport]:
    ws = connection_class(node)
    cls: Any = guarded_http(node, ws)
    config = uvicorn.Config(FastSend(node.app, node), ws=ws,  # type: ignore[attr-defined]
                            log_config=None)
    protocol = cls(config=config, server_state=state or ServerState(), app_state={})
    transport = PausingTransport()
    transport.protocol = protocol
    protocol.connection_made(transport)
    return protocol, transport


def hold(monkeypatch: pytest.MonkeyPatch, router: Any, method: str) -> asyncio.Event:
    """``router.<method>`` waits until the returned event is set, then runs as before."""
    gate = asyncio.Event()
    real = getattr(router, method)

    async def held(*args: Any) -> Any:
        await gate.wait()
        return await real(*args)

    monkeypatch.setattr(router, method, held)
    return gate


def upgrade(user: str) -> bytes:
    """A websocket upgrade of ``user`` (a token of the tests' secret)."""
    from deploy.local.cluster import client_token

    return (f"GET /v1/ws?token={client_token('s' * 32, user)} HTTP/1.1\r\nHost: t\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()


async def test_pipelined_sends_stop_the_reading_while_more_than_a_few_wait(
        node: HubNode, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = hold(monkeypatch, node.router, "send")
    protocol, transport = guard_on(node)
    protocol.data_received(b"".join(send("p") for _ in range(MAX_WAITING)))
    assert transport.reading
    protocol.data_received(send("p"))  # one more than MAX_WAITING wait
    assert not transport.reading
    gate.set()
    await wait_for(lambda: len(transport.replies()), 5, "the replies",
                   until=lambda n: n == MAX_WAITING + 1)
    assert transport.reading
    assert [orjson.loads(b)["results"][0]["seq"] for _, b in transport.replies()] == \
        list(range(1, MAX_WAITING + 2))


@pytest.mark.parametrize(("later", "status", "code"), [
    (b"GARBAGE\r\n\r\n", 400, "invalid_request"),
    (b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"p" * 20000, 431, "header_too_large"),
], ids=["malformed", "head-too-large"])
async def test_an_error_in_a_later_read_waits_for_the_replies_of_the_sends_in_flight(
        node: HubNode, monkeypatch: pytest.MonkeyPatch, later: bytes, status: int,
        code: str) -> None:
    """A send still in flight when bad bytes come in a later read: its reply first,
    then the error reply, then the half-close; nothing after the bad bytes is read."""
    gate = hold(monkeypatch, node.router, "send")
    protocol, transport = guard_on(node)
    protocol.data_received(send("e") + send("e"))
    protocol.data_received(later)
    protocol.data_received(send("e"))  # not read any more
    await asyncio.sleep(0.05)
    assert transport.out == b"" and not transport.eof
    gate.set()
    await wait_for(lambda: transport.eof, 5, "the error reply")
    replies = transport.replies()
    assert [s for s, _ in replies] == [200, 200, status]
    assert [orjson.loads(b)["results"][0]["seq"] for _, b in replies[:2]] == [1, 2]
    error = orjson.loads(replies[2][1])["error"]
    assert (error["code"], error["retryable"]) == (code, False)


async def test_a_client_that_does_not_read_its_replies_is_not_read_either(
        node: HubNode) -> None:
    protocol, transport = guard_on(node)
    protocol.pause_writing()
    assert not transport.reading
    protocol.resume_writing()
    assert transport.reading
    protocol.data_received(send("w"))
    await wait_for(lambda: transport.replies(), 5, "the reply")
    assert not transport.closed


async def test_shutdown_closes_an_idle_send_connection_and_waits_for_one_in_flight(
        node: HubNode, monkeypatch: pytest.MonkeyPatch) -> None:
    state = ServerState()
    idle, idle_transport = guard_on(node, state)
    busy, busy_transport = guard_on(node, state)
    idle.data_received(send("s1"))
    await wait_for(lambda: idle_transport.replies(), 5, "the first reply")
    gate = hold(monkeypatch, node.router, "send")
    busy.data_received(send("s2"))
    await asyncio.sleep(0.01)
    assert state.connections == {idle, busy} and len(state.tasks) == 1
    for connection in list(state.connections):  # what uvicorn's shutdown does
        connection.shutdown()
    assert idle_transport.closed and not busy_transport.closed
    gate.set()
    await wait_for(lambda: busy_transport.closed, 5, "the close after the reply")
    assert b"\r\nconnection: close\r\n" in busy_transport.out
    assert [s for s, _ in busy_transport.replies()] == [200]
    await wait_for(lambda: not state.tasks, 5, "the task's end")


async def test_another_route_in_a_new_read_waits_for_the_sends_then_goes_to_uvicorn(
        node: HubNode, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its head in two reads while a send is in flight: held (reading stopped), then
    uvicorn gets it from its first byte once the send is answered."""
    gate = hold(monkeypatch, node.router, "send")
    protocol, transport = guard_on(node)
    protocol.data_received(send("h"))
    get = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    protocol.data_received(get[:10])
    assert transport.reading and protocol.inner is None  # not known yet: a send maybe
    protocol.data_received(get[10:] + send("h"))  # and a send behind it: uvicorn's now
    assert not transport.reading and protocol.inner is None
    gate.set()
    await wait_for(lambda: len(transport.replies()), 5, "three replies",
                   until=lambda n: n == 3)
    assert transport.reading and protocol.inner is not None
    (s1, b1), (s2, b2), (s3, b3) = transport.replies()
    assert (s1, s2, s3) == (200, 200, 200) and orjson.loads(b2) == {"status": "ok"}
    assert [orjson.loads(b)["results"][0]["seq"] for b in (b1, b3)] == [1, 2]


async def test_a_websocket_upgrade_on_a_send_connection_goes_through_uvicorn(
        node: HubNode) -> None:
    protocol, transport = guard_on(node)
    protocol.data_received(send("w"))
    await wait_for(lambda: transport.replies(), 5, "the reply")
    protocol.data_received(upgrade("w"))
    ws = transport.get_protocol()
    assert type(ws).__name__ == "HubWsConnection"
    assert b"HTTP/1.1 101 Switching Protocols\r\n" in transport.out
    ws.connection_lost(None)


async def test_the_101_does_not_wait_for_a_slow_hello(node: HubNode, monkeypatch: Any) -> None:
    """The 101 does not wait for hello: while the inbox read (a cluster's router, the
    store's thread) is slow the client has its 101, and hello follows it."""
    gate = hold(monkeypatch, node.router, "read_state")
    protocol, transport = guard_on(node)
    protocol.data_received(upgrade("w"))
    await wait_for(lambda: b"HTTP/1.1 101 Switching Protocols\r\n" in transport.out, 5, "the 101")
    assert b"hello" not in transport.out
    gate.set()
    await wait_for(lambda: b'"type":"hello"' in transport.out, 5, "hello after the 101")
    assert transport.out.index(b"hello") > transport.out.index(b"\r\n\r\n")
    transport.get_protocol().connection_lost(None)
