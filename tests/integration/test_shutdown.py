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
from tests.support.server import ServerProcess, running_server
from tests.support.tcptable import socket_row

EVENTS = 12
BODY = "x" * 900


def _server_closed_its_side(server_port: int, client_port: int) -> bool:
    """The server's end of the connection sent its FIN (FIN_WAIT1/2, CLOSING, or gone
    from the table when the process let go of it): state in /proc/net/tcp."""
    row = socket_row(server_port, client_port)
    return row is None or row[3] in ("04", "05", "0B", "06")  # FIN_WAIT1/2, CLOSING, TIME_WAIT


async def behind_on_reading(srv: ServerProcess, user: str) -> RawWs:
    """A connection of ``user`` with EVENTS stored events as its backlog, a small receive
    buffer, and its reading paused."""
    async with srv.http() as http:
        for i in range(EVENTS):
            r = await http.post("/v1/notifications", json={"users": [user],
                                                            "body": {"i": i, "pad": BODY}})
            assert r.status_code == 200
    ws = await RawWs.connect(srv.port, f"/v1/ws?token={srv.token(user)}&after=0", rcvbuf=4096)
    ws.pause_reading()
    return ws


async def test_a_client_behind_on_reading_and_still_writing_gets_every_frame_and_4000(
        tmp_path: Path) -> None:
    """The client's receive window is full (it reads late), so the server's last frames
    and its close frame wait in the server's kernel when the server ends the connection;
    the client writes once more after that. A connection closed with unread data is
    reset, and a reset throws away what the kernel still held: the events and the 4000
    never arrive. The server half-closes instead and reads until the client is done."""
    with running_server(tmp_path) as srv:
        ws = await behind_on_reading(srv, "late-reader")
        try:
            # the backlog (~11 KB) fills its window; the rest waits in the server's
            # kernel (little: the server's buffers must take it all at once)
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


async def test_a_send_waiting_for_an_ack_at_shutdown_is_answered_at_once(
        tmp_path: Path) -> None:
    """operations.md, graceful shutdown: requests in flight are answered. A send with
    ``ack`` waited for a session that the shutdown had just closed (nobody could ack any
    more) until the grace ran out, then lost its connection with no answer: it is
    answered 503 ``shutting_down`` (retryable; its event stays stored) as the sessions
    close."""
    from tests.support.ws import ws_client

    with running_server(tmp_path, PUSHGATE_SHUTDOWN_GRACE_S="8") as srv:
        async with ws_client(srv, "bob") as bob, srv.http() as http:
            sending = asyncio.create_task(http.post("/v1/notifications", json={
                "users": ["bob"], "body": 1, "ack": True, "ack_timeout_ms": 60_000}))
            assert (await bob.recv_type("event"))["seq"] == 1  # (never acked)
            assert srv.child is not None and srv.child.pid is not None
            t0 = time.monotonic()
            os.kill(srv.child.pid, signal.SIGTERM)
            r = await asyncio.wait_for(sending, 20)
            assert time.monotonic() - t0 < 3
        assert r.status_code == 503, r.text
        body = r.json()
        assert (body["error"]["code"], body["error"]["retryable"]) == ("shutting_down", True)
        assert body["results"][0]["seq"] == 1 and r.headers["retry-after"] == "1"
        assert srv.stop() == -signal.SIGTERM
        srv.start()
        async with srv.http() as http:  # stored
            events = (await http.get("/v1/users/bob/events")).json()["events"]
        assert [e["seq"] for e in events] == [1]


async def test_ctrl_c_ends_the_gateway_by_sigint_and_twice_at_once(tmp_path: Path) -> None:
    """operations.md, graceful shutdown: the process ends by the signal it got (Ctrl-C
    ended with click's "Aborted!" and status 1). A second Ctrl-C ends the wait for a
    client that stopped reading (it waited the whole grace, then logged a traceback and
    left the store unclosed)."""
    with running_server(tmp_path, PUSHGATE_SHUTDOWN_GRACE_S="10") as srv:
        assert srv.stop(signal.SIGINT) == -signal.SIGINT
        assert "Aborted" not in srv.log_text() and "Traceback" not in srv.log_text()
        srv.start()
        user = "stuck"
        ws = await behind_on_reading(srv, user)
        try:  # it never reads again: the close waits the grace for it
            assert srv.child is not None and srv.child.pid is not None
            pid = srv.child.pid
            os.kill(pid, signal.SIGINT)
            await asyncio.sleep(0.3)  # (the first one under way: a human's second press)
            t0 = time.monotonic()
            os.kill(pid, signal.SIGINT)
            assert srv.child.wait_exit(20) == -signal.SIGINT
            assert time.monotonic() - t0 < 5  # (the grace is 10 s)
            srv.stop()
        finally:
            ws.abort()
        log = srv.log_text()
        assert "Traceback" not in log and "[error" not in log, log[-3000:]
        srv.start()  # what was stored before is there
        async with srv.http() as http:
            events = (await http.get(f"/v1/users/{user}/events?limit=100")).json()["events"]
        assert len(events) == EVENTS
