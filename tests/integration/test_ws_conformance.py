"""RFC 6455 conformance of ``GET /v1/ws`` as docs/protocol.md promises it, black-box
against the real ``pushgate serve``, with independent clients: raw sockets that write
the upgrade and the frames themselves (tests/support/rawws.py) and the ``websockets``
client library. Every close is judged by the code in the server's close frame, read
from the raw bytes; a correct client then echoes it and the server ends the TCP
connection.

These hold whatever runs the hub's connection layer (uvicorn's websockets-sansio
protocol before #20, the hub's own protocol on websockets' sans-I/O core since).
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.support.rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RSV1,
    RSV2,
    RSV3,
    RawWs,
    close_payload,
    frame,
    raw_frame,
)
from tests.support.server import ServerProcess, running_server

MAX_FRAME = 4096
HEADER_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    path: Path = tmp_path_factory.mktemp("conformance")
    with running_server(path, "--max-frame-bytes", str(MAX_FRAME),
                        PUSHGATE_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT)) as s:
        yield s


async def session(srv: ServerProcess, user: str = "conf") -> RawWs:
    """An upgraded raw connection whose ``hello`` was read."""
    ws = await RawWs.connect(srv.port, f"/v1/ws?token={srv.token(user)}")
    hello = await ws.recv_json()
    assert hello["type"] == "hello", hello
    return ws


def ping_json(rid: object) -> bytes:
    return json.dumps({"type": "ping", "rid": rid}, ensure_ascii=False).encode()


# -- fragmentation and control frames -------------------------------------------------


async def test_fragmented_text_message_is_assembled(srv: ServerProcess) -> None:
    ws = await session(srv)
    try:
        msg = ping_json(1)
        a, b = len(msg) // 3, 2 * len(msg) // 3
        ws.write(frame(OP_TEXT, msg[:a], fin=False))
        ws.write(frame(OP_CONT, msg[a:b], fin=False))
        ws.write(frame(OP_CONT, msg[b:], fin=True))
        assert await ws.recv_json() == {"type": "pong", "rid": 1}
        # a UTF-8 character split between two fragments is still one character
        msg = ping_json("é€😀")
        cut = msg.index("€".encode()) + 1
        ws.write(frame(OP_TEXT, msg[:cut], fin=False))
        ws.write(frame(OP_CONT, msg[cut:], fin=True))
        assert await ws.recv_json() == {"type": "pong", "rid": "é€😀"}
        # empty fragments are fragments too
        ws.write(frame(OP_TEXT, b"", fin=False))
        ws.write(frame(OP_CONT, ping_json(2), fin=False))
        ws.write(frame(OP_CONT, b"", fin=True))
        assert await ws.recv_json() == {"type": "pong", "rid": 2}
    finally:
        ws.abort()


async def test_fragments_from_the_websockets_library(srv: ServerProcess) -> None:
    async with connect(f"{srv.ws_url}?token={srv.token('lib')}", open_timeout=10) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
        await ws.send(['{"type":', '"ping",', '"rid":"lib"}'])  # a fragmented message
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong",
                                                                     "rid": "lib"}
        # the library's ping: its waiter completes only on a pong with the same payload
        pong = await ws.ping(b"library ping")
        await asyncio.wait_for(pong, 10)


async def test_control_frames_between_fragments(srv: ServerProcess) -> None:
    ws = await session(srv)
    try:
        msg = ping_json("mid")
        a, b = len(msg) // 3, 2 * len(msg) // 3
        ws.write(frame(OP_TEXT, msg[:a], fin=False))
        ws.write(frame(OP_PING, b"between fragments"))
        ws.write(frame(OP_CONT, msg[a:b], fin=False))
        ws.write(frame(OP_PONG, b"unsolicited"))  # allowed, and ignored
        ws.write(frame(OP_PING, b""))
        ws.write(frame(OP_CONT, msg[b:], fin=True))
        got = [await ws.next_frame() for _ in range(3)]
        pongs = [f.payload for f in got if f.opcode == OP_PONG]
        texts = [f.json() for f in got if f.opcode == OP_TEXT]
        assert pongs == [b"between fragments", b""], got
        assert texts == [{"type": "pong", "rid": "mid"}], got
    finally:
        ws.abort()


@pytest.mark.parametrize("payload", [b"", b"x", bytes(range(125))], ids=["empty", "1", "125"])
async def test_ping_gets_pong_with_the_same_payload(srv: ServerProcess, payload: bytes) -> None:
    ws = await session(srv)
    try:
        ws.write(frame(OP_PING, payload))
        f = await ws.next_frame()
        assert (f.opcode, f.payload, f.fin) == (OP_PONG, payload, True)
        assert not f.masked  # server frames are never masked
        # the session goes on
        ws.send_json({"type": "ping", "rid": 3})
        assert await ws.recv_json() == {"type": "pong", "rid": 3}
    finally:
        ws.abort()


# -- the close handshake --------------------------------------------------------------


@pytest.mark.parametrize(("code", "reason"), [(1000, "bye"), (4321, "app-defined")])
async def test_client_close_is_echoed_and_the_connection_ends(srv: ServerProcess, code: int,
                                                              reason: str) -> None:
    ws = await session(srv)
    try:
        ws.write(frame(OP_CLOSE, close_payload(code, reason)))
        got_code, _ = await ws.close_code()
        assert got_code == code
        await ws.wait_ended()
        assert ws.frames[-1].opcode == OP_CLOSE, "nothing may follow the close frame"
    finally:
        ws.abort()


async def test_library_close_handshake(srv: ServerProcess) -> None:
    async with connect(f"{srv.ws_url}?token={srv.token('lib')}", open_timeout=10,
                       close_timeout=5) as ws:
        await asyncio.wait_for(ws.recv(), 10)
        await ws.close(1000, "bye")
    assert ws.protocol.close_rcvd is not None
    assert ws.protocol.close_rcvd.code == 1000


# -- protocol violations: the documented close code -------------------------------------


def _fragments_over_the_limit(ws: RawWs) -> None:
    ws.write(frame(OP_TEXT, b"x" * (MAX_FRAME * 3 // 4), fin=False))
    ws.write(frame(OP_CONT, b"x" * (MAX_FRAME * 3 // 4), fin=True))


def _data_frame_inside_a_fragmented_message(ws: RawWs) -> None:
    ws.write(frame(OP_TEXT, b'{"type":', fin=False))
    ws.write(frame(OP_TEXT, ping_json(1)))


VIOLATIONS: list[tuple[str, Callable[[RawWs], None], int]] = [
    ("invalid-utf8", lambda ws: ws.write(frame(OP_TEXT, b'{"type":"ping","rid":"\xff"}')), 1007),
    ("invalid-utf8-overlong", lambda ws: ws.write(frame(OP_TEXT, b'{"type":"\xc0\xaf"}')), 1007),
    ("invalid-utf8-surrogate",
     lambda ws: ws.write(frame(OP_TEXT, b'{"type":"ping","rid":"\xed\xa0\x80"}')), 1007),
    ("unmasked", lambda ws: ws.write(raw_frame(OP_TEXT, ping_json(1), mask=False)), 1002),
    ("rsv1", lambda ws: ws.write(raw_frame(OP_TEXT, ping_json(1), rsv=RSV1)), 1002),
    ("rsv2", lambda ws: ws.write(raw_frame(OP_TEXT, ping_json(1), rsv=RSV2)), 1002),
    ("rsv3-on-ping", lambda ws: ws.write(raw_frame(OP_PING, b"x", rsv=RSV3)), 1002),
    ("opcode-0x3", lambda ws: ws.write(raw_frame(0x3, ping_json(1))), 1002),
    ("opcode-0xb", lambda ws: ws.write(raw_frame(0xB, b"")), 1002),
    ("over-max-frame-bytes", lambda ws: ws.write(frame(OP_TEXT, b" " * (MAX_FRAME + 1))), 1009),
    ("fragments-over-max-frame-bytes", _fragments_over_the_limit, 1009),
    ("continuation-without-start", lambda ws: ws.write(frame(OP_CONT, ping_json(1))), 1002),
    ("data-frame-inside-fragmented-message", _data_frame_inside_a_fragmented_message, 1002),
    ("fragmented-ping", lambda ws: ws.write(raw_frame(OP_PING, b"x", fin=False)), 1002),
    ("ping-over-125-bytes", lambda ws: ws.write(raw_frame(OP_PING, b"x" * 126)), 1002),
    ("close-1-byte-payload", lambda ws: ws.write(raw_frame(OP_CLOSE, b"\x03")), 1002),
    ("close-code-999", lambda ws: ws.write(frame(OP_CLOSE, close_payload(999))), 1002),
    ("close-code-1005", lambda ws: ws.write(raw_frame(OP_CLOSE, close_payload(1005))), 1002),
    ("close-reason-invalid-utf8",
     lambda ws: ws.write(raw_frame(OP_CLOSE, close_payload(1000, b"\xff"))), 1007),
    ("binary-frame", lambda ws: ws.write(frame(OP_BINARY, ping_json(1))), 4104),
]


@pytest.mark.parametrize(("send", "code"), [v[1:] for v in VIOLATIONS],
                         ids=[v[0] for v in VIOLATIONS])
async def test_protocol_violation_closes_with_documented_code(
        srv: ServerProcess, send: Callable[[RawWs], None], code: int) -> None:
    ws = await session(srv)
    try:
        send(ws)
        got, reason = await ws.close_code()
        assert got == code, (got, reason)
        assert [f.opcode for f in ws.frames[1:]] == [OP_CLOSE], "nothing else is answered"
        ws.write(frame(OP_CLOSE, close_payload(got)))  # a correct client echoes it
        await ws.wait_ended()
    finally:
        ws.abort()
    # the server is unharmed
    ws = await session(srv)
    try:
        ws.send_json({"type": "ping", "rid": "after"})
        assert await ws.recv_json() == {"type": "pong", "rid": "after"}
    finally:
        ws.abort()


# -- clients that never complete the upgrade -----------------------------------------------


HALF_HEAD = (b"GET /v1/ws?token=x HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             b"Connection: Upg")


async def test_incomplete_upgrade_is_closed_after_the_header_timeout(srv: ServerProcess) -> None:
    ws = await RawWs.open(srv.port)
    try:
        started = time.monotonic()
        ws.write(HALF_HEAD)
        await ws.wait_ended(timeout=HEADER_TIMEOUT + 4)
        took = time.monotonic() - started
        assert took >= HEADER_TIMEOUT * 0.8, f"closed after {took:.2f} s: before the timeout"
        answer = ws.head or b""
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
    finally:
        ws.abort()


HALF_OPEN = 10_000


def _raise_nofile_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")


async def test_half_open_upgrades_do_not_block_a_real_user(tmp_path: Path) -> None:
    _raise_nofile_limit(HALF_OPEN + 1000)
    # the server holds them all (no header timeout within the test, no per-IP limit):
    # the real user must be served anyway
    with running_server(tmp_path, PUSHGATE_HEADER_TIMEOUT_S="120",
                        PUSHGATE_MAX_CONNECTIONS_PER_IP="0",
                        PUSHGATE_CONNECT_RATE_PER_IP="0") as srv:
        held: list[RawWs] = []
        gate = asyncio.Semaphore(500)

        async def half_open() -> None:
            async with gate:
                ws = await RawWs.open(srv.port)
                held.append(ws)
                ws.write(HALF_HEAD)

        try:
            await asyncio.wait_for(asyncio.gather(*(half_open() for _ in range(HALF_OPEN))), 60)
            async with srv.http() as http:
                started = time.monotonic()
                async with connect(f"{srv.ws_url}?token={srv.token('real')}", open_timeout=10,
                                   close_timeout=2) as user:
                    hello = json.loads(await asyncio.wait_for(user.recv(), 10))
                    assert hello["type"] == "hello"
                    r = await http.post("/v1/notifications",
                                        json={"users": ["real"], "body": "through"})
                    assert r.status_code == 200, r.text
                    event = json.loads(await asyncio.wait_for(user.recv(), 10))
                    assert (event["type"], event["body"]) == ("event", "through")
                    took = time.monotonic() - started
            assert took < 3.0, f"connect, hello and one send took {took:.2f} s"
            # they were really held open meanwhile
            ended = sum(1 for ws in held if ws.ended)
            assert ended == 0, f"{ended} half-open connections were dropped early"
        finally:
            for ws in held:
                ws.abort()


# -- the opening handshake (pushgate/hub/handshake.py) --------------------------------------

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def library_101(request: bytes) -> bytes:
    """What ``websockets``' own ``ServerProtocol`` answers to ``request`` (Date aside)."""
    from websockets.server import ServerProtocol

    proto = ServerProtocol()
    proto.receive_data(request)
    (req,) = proto.events_received()
    proto.send_response(proto.accept(req))
    return b"".join(proto.data_to_send())


def without_date(head: bytes) -> bytes:
    return b"\r\n".join(x for x in head.split(b"\r\n") if not x.startswith(b"Date: "))


@pytest.mark.parametrize("extra", [
    "",  # the plain upgrade: answered without websockets' HTTP parser
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",  # declined
    "Connection: keep-alive\r\n",  # a second Connection header: websockets' path
    "Sec-WebSocket-Protocol: chat\r\n",  # a subprotocol offered (none chosen): same
    "Content-Length: 0\r\n",  # an empty body announced: the plain path too
], ids=["plain", "extensions-offered", "two-connection-headers", "subprotocol-offered",
        "content-length-0"])
async def test_an_upgrade_gets_the_librarys_101_and_the_frames_behind_it(
        srv: ServerProcess, extra: str) -> None:
    """Whichever path answers the handshake, the 101 is byte for byte the one
    ``websockets`` writes for the same request (no extension or subprotocol chosen), and
    a frame in the same write as the head is handled after it."""
    ws = await RawWs.open(srv.port)
    try:
        request = ws.upgrade_request(f"/v1/ws?token={srv.token('hs')}", "t", KEY, extra)
        ws.write(request + frame(OP_PING, b"behind"))
        hello = await ws.recv_json()
        assert hello["type"] == "hello"
        assert ws.head is not None
        assert without_date(ws.head) == without_date(library_101(request))
        assert b"\r\nDate: " in ws.head
        # (the pong is written at once, hello once the session is registered)
        assert [f.payload for f in ws.frames if f.opcode == OP_PONG] == [b"behind"]
    finally:
        ws.abort()


@pytest.mark.parametrize(("extra", "status", "message", "field"), [
    (f"Sec-WebSocket-Key: {KEY}\r\n", 400,
     "not a websocket upgrade: invalid Sec-WebSocket-Key header: multiple values",
     "Sec-WebSocket-Key"),
    ("Origin: http://a\r\nOrigin: http://b\r\n", 400,
     "not a websocket upgrade: invalid Origin header: multiple values", "Origin"),
], ids=["two-keys", "two-origins"])
async def test_an_upgrade_the_library_refuses_is_refused_with_its_reason(
        srv: ServerProcess, extra: str, status: int, message: str, field: str) -> None:
    """What the plain path leaves to ``websockets`` keeps its checks and messages, and
    names the header at fault."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        writer.write(RawWs.upgrade_request(f"/v1/ws?token={srv.token('hs')}", "t", KEY, extra))
        reply = await asyncio.wait_for(reader.read(), 10)  # until the server closes
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} ".encode()), reply
        assert json.loads(body)["error"] == {"code": "invalid_request", "message": message,
                                             "retryable": False, "field": field}
    finally:
        writer.close()


async def test_an_unsupported_websocket_version_is_426_naming_the_version_understood(
        srv: ServerProcess) -> None:
    """RFC 6455 4.4: a version the server does not understand gets an error such as 426
    and a ``Sec-WebSocket-Version`` header with the versions it does (it was a 400
    without it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        writer.write((f"GET /v1/ws?token={srv.token('hs')} HTTP/1.1\r\nHost: t\r\n"
                      f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 8\r\n\r\n").encode())
        reply = await asyncio.wait_for(reader.read(), 10)  # until the server closes
        head, _, body = reply.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0] == "HTTP/1.1 426 Upgrade Required", reply
        assert {"Upgrade: websocket", "Sec-WebSocket-Version: 13"} <= set(lines[1:]), reply
        error = json.loads(body)["error"]
        assert (error["code"], error["field"]) == ("invalid_request", "Sec-WebSocket-Version")
    finally:
        writer.close()
