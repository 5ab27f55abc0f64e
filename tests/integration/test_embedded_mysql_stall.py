"""The embedded gateway on MySQL whose server stops answering (connections open, no
bytes: a TCP proxy in front of it, stalled): a send is answered 503 ``store_unavailable``
at the store deadline (8 s), as in the cluster — it hung 60 s (twice the driver's read
timeout), and a later one until the server answered again."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from pushgate.router.backend import STORE_DEADLINE_S
from pushgate.store import migrate
from tests import services
from tests.support.server import running_server
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.timeout(120)


async def _close_of(ws_url: str, token: str) -> tuple[int, str]:
    async with connect(f"{ws_url}?token={token}&after=0", open_timeout=10) as ws:
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass
    assert ws.protocol.close_rcvd is not None
    return ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason


async def test_a_stalled_mysql_is_store_unavailable_at_the_deadline(
        tmp_path: Path, mysql_server: str) -> None:
    with services.mysql_database(mysql_server, services.new_database_name("_stall")) as url:
        await migrate(url)
        target = make_url(url)
        with TcpProxy(target.host or "127.0.0.1", target.port or 3306) as proxy:
            through = target.set(host="127.0.0.1", port=proxy.port)
            with running_server(tmp_path, PUSHGATE_STORE_URL=through.render_as_string(
                    hide_password=False)) as srv:
                async with srv.http() as http:
                    r = await http.post("/v1/notifications",
                                        json={"users": ["sam"], "body": 1, "id": "s1"})
                    assert r.status_code == 200, r.text
                    proxy.stall()
                    t0 = time.monotonic()
                    # a client connecting meanwhile: closed 4003 at the deadline
                    closing = asyncio.create_task(_close_of(srv.ws_url, srv.token("sam")))
                    r = await http.post("/v1/notifications",
                                        json={"users": ["sam"], "body": 2, "id": "s2"},
                                        timeout=60)
                    took = time.monotonic() - t0
                    # told without the store's details (a driver's error names the
                    # database's host; the API's callers and the log keep them)
                    assert await asyncio.wait_for(closing, 30) == (
                        4003, "the event store is unavailable; retry shortly")
                    error = r.json()["error"]
                    assert (r.status_code, error["code"], error["retryable"]) == \
                        (503, "store_unavailable", True), r.text
                    assert STORE_DEADLINE_S - 0.5 < took < STORE_DEADLINE_S + 3, took
                    assert r.headers["retry-after"] == "1"
                    proxy.resume()
                    # the retry with the same id: stored once (it may have been stored
                    # already, when its commit was under way at the deadline)
                    r = await http.post("/v1/notifications",
                                        json={"users": ["sam"], "body": 2, "id": "s2"},
                                        timeout=60)
                    assert r.status_code == 200, r.text
                    events = (await http.get("/v1/users/sam/events")).json()["events"]
                    assert [e["id"] for e in events] == ["s1", "s2"]
