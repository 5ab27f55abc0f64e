"""SIGTERM as a client sees it on the wire (docs/operations.md, "Graceful shutdown"):
every session gets its queued frames and then the 4000 close frame, also a client that
is behind on reading and still writing while the server stops."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import orjson

from tests.support.rawws import OP_CLOSE, OP_TEXT, RawWs
from tests.support.server import running_server
from tests.support.tcptable import socket_row

EVENTS = 12
BODY = "x" * 900


def _server_closed_its_side(server_port: int, client_port: int) -> bool:
    """The server's end of the connection sent its FIN (FIN_WAIT1/2, CLOSING, or gone
    from the table when the process let go of it): state in /proc/net/tcp."""
    row = socket_row(server_port, client_port)
    return row is None or row[3] in ("04", "05", "0B", "06")  # FIN_WAIT1/2, CLOSING, TIME_WAIT


async def test_a_client_behind_on_reading_and_still_writing_gets_every_frame_and_4000(
        tmp_path: Path) -> None:
    """The client's receive window is full (it reads late), so the server's last frames
    and its close frame wait in the server's kernel when the server ends the connection;
    the client writes once more after that. A connection closed with unread data is
    reset, and a reset throws away what the kernel still held: the events and the 4000
    never arrive. The server half-closes instead and reads until the client is done."""
    with running_server(tmp_path) as srv:
        user = "late-reader"
        async with srv.http() as http:
            for i in range(EVENTS):
                r = await http.post("/v1/notifications", json={"users": [user],
                                                                "body": {"i": i, "pad": BODY}})
                assert r.status_code == 200
        ws = await RawWs.connect(srv.port, f"/v1/ws?token={srv.token(user)}&after=0",
                                 rcvbuf=4096)
        try:
            ws.pause_reading()  # the backlog (~11 KB) fills its window; the rest waits in
            # the server's kernel (little: the server's buffers must take it all at once)
            assert srv.child is not None and srv.child.pid is not None
            os.kill(srv.child.pid, signal.SIGTERM)
            sock = ws.transport.get_extra_info("socket")  # type: ignore[union-attr]
            client_port = sock.getsockname()[1]
            deadline = time.monotonic() + 15
            while not _server_closed_its_side(srv.port, client_port):
                assert time.monotonic() < deadline, "the server never ended the connection"
                await asyncio.sleep(0.01)
            ws.send_text(orjson.dumps({"type": "ping", "rid": "late"}))  # after its FIN
            ws.resume_reading()
            await ws.wait_until(lambda: ws.close_frame is not None or ws.lost, 15,
                                "the close frame")
            assert ws.close_frame is not None, f"no close frame: {ws.error!r}"
            assert ws.close_frame.close[0] == 4000
            events = [f.json() for f in ws.frames if f.opcode == OP_TEXT
                      and f.json()["type"] == "event"]
            assert [e["seq"] for e in events] == list(range(1, EVENTS + 1))
            assert ws.error is None, ws.error  # no reset
            ws.send(OP_CLOSE, ws.close_frame.payload)  # the close handshake completes
        finally:
            ws.abort()
        assert srv.stop() == -signal.SIGTERM
