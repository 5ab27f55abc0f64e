"""The server's websocket keepalive as docs/protocol.md promises it, black-box with raw
sockets: a ping every ``ping_interval_s``; a client that answers keeps its session; a
pong missing for ``ping_timeout_s`` closes with 1011 "keepalive ping timeout".

The hub counts an empty pong that arrives alone in a read without handing it to
``websockets`` (docs/design-notes.md §12, "The keepalive pong"); the last test makes
sure that the same six bytes in the middle of a frame are never taken for a pong.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.rawws import OP_PING, OP_TEXT, RawWs, frame
from tests.support.server import ServerProcess, running_server
from tests.support.tcptable import socket_row

INTERVAL = 0.4  # ping_interval_s
TIMEOUT = 1.2  # ping_timeout_s
PERIOD = min(INTERVAL, TIMEOUT) / 2  # the timer wheel's period: a check is at most this late


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    path: Path = tmp_path_factory.mktemp("keepalive")
    with running_server(path, PUSHGATE_PING_INTERVAL_S=str(INTERVAL),
                        PUSHGATE_PING_TIMEOUT_S=str(TIMEOUT)) as s:
        yield s


async def session(srv: ServerProcess, user: str) -> RawWs:
    ws = await RawWs.connect(srv.port, f"/v1/ws?token={srv.token(user)}")
    assert (await ws.recv_json())["type"] == "hello"
    return ws


def pings(ws: RawWs) -> int:
    return sum(1 for f in ws.frames if f.opcode == OP_PING)


async def test_answered_pings_keep_the_session_and_a_missing_pong_closes_1011(
        srv: ServerProcess) -> None:
    answering = await session(srv, "answers")
    silent = await session(srv, "silent")
    try:
        await keepalive(srv, answering, silent)
    finally:
        answering.abort()
        silent.abort()


async def keepalive(srv: ServerProcess, answering: RawWs, silent: RawWs) -> None:
    silent.auto_pong = False
    opened = time.monotonic()
    code, reason = await silent.close_code(timeout=INTERVAL + TIMEOUT + 4 * PERIOD + 5)
    closed_after = time.monotonic() - opened
    assert (code, reason) == (1011, "keepalive ping timeout")
    # the first ping is due one interval after the connect, its pong one timeout later
    assert INTERVAL + TIMEOUT - PERIOD <= closed_after <= INTERVAL + TIMEOUT + 2 * PERIOD + 2
    # meanwhile the answering client got the same pings and kept its session
    assert pings(answering) >= 2
    before = pings(answering)
    await answering.wait_until(lambda: pings(answering) >= before + 3, 3 * INTERVAL + 5,
                               "three more pings")
    assert answering.close_frame is None and not answering.ended
    async with srv.http() as http:
        r = await http.post("/v1/notifications", json={"users": ["answers"], "body": {"n": 1}})
    assert r.status_code == 200, r.text
    event = await answering.recv_until(lambda m: m.get("type") == "event")
    assert event["body"] == {"n": 1}
    answering.send_json({"type": "ping", "rid": "still"})
    assert await answering.recv_until(lambda m: m.get("type") == "pong") == {
        "type": "pong", "rid": "still"}


def _server_read_everything(server_port: int, client_port: int) -> bool:
    """Every byte the client wrote was acknowledged (the client socket's tx_queue in
    /proc/net/tcp is 0: it reached the server's kernel) and the server process has read
    it (the server socket's rx_queue is 0)."""
    server, client = socket_row(server_port, client_port), socket_row(client_port, server_port)
    assert server is not None and client is not None, "connection not found in /proc/net/tcp"
    return int(server[4].split(":")[1], 16) == 0 and int(client[4].split(":")[0], 16) == 0


async def server_has_read(ws: RawWs, server_port: int) -> None:
    assert ws.transport is not None
    sock: socket.socket = ws.transport.get_extra_info("socket")
    client_port = sock.getsockname()[1]
    deadline = time.monotonic() + 10
    while not _server_read_everything(server_port, client_port):
        assert time.monotonic() < deadline, "the server did not read what was sent"
        await asyncio.sleep(0.005)


async def test_pong_bytes_inside_a_frame_are_not_taken_for_a_pong(srv: ServerProcess) -> None:
    """A text frame whose masked payload contains the bytes of an empty pong, and which
    arrives so that those six bytes are one read of the server's: the frame is parsed
    whole (its ``ping`` is answered with its own ``rid``), nothing else happens."""
    ws = await session(srv, "split")
    try:
        await split_pong_bytes(srv, ws)
    finally:
        ws.abort()


async def split_pong_bytes(srv: ServerProcess, ws: RawWs) -> None:
    ws.auto_pong = False  # no pong of our own between the pieces
    rid = "x" * 40
    payload = f'{{"type":"ping","rid":"{rid}"}}'.encode()
    mask = bytes([0x8A ^ ord("x"), 0x80 ^ ord("x"), 0x11, 0x22])
    data = frame(OP_TEXT, payload)  # masked by websockets' encoder with a random key...
    head = data[:2]  # ...so mask it again with one that puts 0x8A 0x80 on the wire
    wire = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    start = payload.index(b"x" * 8) // 4 * 4 + 4  # a multiple of 4 inside the rid
    assert wire[start:start + 2] == b"\x8a\x80"
    whole = head + mask + wire
    cut = 2 + 4 + start
    pieces = [whole[:cut], whole[cut:cut + 6], whole[cut + 6:]]
    assert pieces[1][:2] == b"\x8a\x80" and len(pieces[1]) == 6
    for piece in pieces:
        ws.write(piece)
        await server_has_read(ws, srv.port)
    assert await ws.recv_until(lambda m: m.get("type") == "pong", timeout=5) == {
        "type": "pong", "rid": rid}
    ws.send_json({"type": "ping", "rid": "after"})
    assert await ws.recv_until(lambda m: m.get("type") == "pong", timeout=5) == {
        "type": "pong", "rid": "after"}
    assert ws.close_frame is None
