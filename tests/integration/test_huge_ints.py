"""Huge, negative, float and boolean numbers in every numeric field, against the real
``pushgate serve`` (issue #15 item 2): the documented error — an ``error`` frame naming
the field with the rid echoed, the session open; a 400 naming the field over HTTP — and
no traceback in the server's log (before the bounds, ``{"type":"fetch","after":2**63}``
from a user with an inbox raised OverflowError in SQLite and closed the socket with 1000).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pushgate.models import MAX_SEQ
from tests.support.server import ServerProcess, running_server
from tests.support.ws import Client, ws_client

TRACEBACKS = ("Traceback", "Exception in ASGI application")

# JSON literals: 2**63 .. 2**64-1 decode as integers, 10**30 and -2**63-1 as floats
HUGE = [str(2**63), str(2**64 - 1), "1" + "0" * 30, str(-(2**63)), str(-(2**63) - 1)]
BAD = [*HUGE, "-1", "1.5", "true"]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    path: Path = tmp_path_factory.mktemp("ints")
    with running_server(path, PUSHGATE_ACK_TIMEOUT_MS="100") as s:
        yield s
        log = s.log_text()
    for word in TRACEBACKS:
        assert word not in log, log[-4000:]


def no_traceback(srv: ServerProcess) -> None:
    log = srv.log_text()
    for word in TRACEBACKS:
        assert word not in log, log[-4000:]


async def answer(c: Client, text: str, rid: str) -> dict:
    """Send a raw frame; the frame answering ``rid``."""
    await c.ws.send(text)
    deadline = time.monotonic() + 10
    while True:
        f = await c.recv(max(0.01, deadline - time.monotonic()))
        if f.get("rid") == rid and f["type"] in ("reply", "error"):
            return f


# (frame with {v} for the value and {rid}, field named)
FRAMES = [
    ('{{"type":"ack","seq":{v},"rid":"{rid}"}}', "seq"),
    ('{{"type":"fetch","after":{v},"rid":"{rid}"}}', "after"),
    ('{{"type":"fetch","limit":{v},"rid":"{rid}"}}', "limit"),
    ('{{"type":"read","seqs":[1,{v}],"rid":"{rid}"}}', "seqs"),
    ('{{"type":"read","ranges":[[1,{v}]],"rid":"{rid}"}}', "ranges"),
    ('{{"type":"send","users":["u"],"body":1,"ttl":{v},"rid":"{rid}"}}', "ttl"),
    ('{{"type":"send","users":["u"],"body":1,"ack":true,"ack_timeout_ms":{v},"rid":"{rid}"}}',
     "ack_timeout_ms"),
    ('{{"type":"send","users":["u"],"body":1,"push":{{"title":"t","badge":{v}}},"rid":"{rid}"}}',
     "push.badge"),
    ('{{"type":"send","users":["u"],"body":1,"push":{{"title":"t","ttl":{v}}},"rid":"{rid}"}}',
     "push.ttl"),
]


async def test_websocket_frames_get_an_error_frame_and_the_session_stays(
        srv: ServerProcess) -> None:
    user = f"ints-{time.monotonic_ns()}"
    async with srv.http() as http:
        r = await http.post("/v1/notifications", json={"users": [user], "body": {"n": 1}})
        assert r.status_code == 200  # the user has an inbox: a bad fetch would reach the store
    async with ws_client(srv, user) as c:
        n = 0
        for template, field in FRAMES:
            for value in BAD:
                n += 1
                rid = f"r{n}"
                err = await answer(c, template.format(v=value, rid=rid), rid)
                assert err["type"] == "error", (template, value, err)
                assert (err["code"], err["field"]) == ("invalid_request", field), (value, err)
                assert f"'{field}'" in err["message"]
        # the frame, and the edges that are accepted
        err = await answer(c, f'{{"type":"fetch","after":{2**64 - 1},"rid":"x"}}', "x")
        assert err["message"] == f"'after' must be <= {MAX_SEQ}"
        reply = await answer(c, f'{{"type":"fetch","after":{MAX_SEQ},"rid":"top"}}', "top")
        assert reply["type"] == "reply" and reply["events"] == [] and reply["head"] == 1
        reply = await answer(c, f'{{"type":"read","ranges":[[1,{MAX_SEQ}]],"rid":"rd"}}', "rd")
        assert reply == {"type": "reply", "rid": "rd", "head": 1, "unread": 0, "live": 1}
        # rids: integers up to 2**53-1 are echoed; beyond, an error naming rid
        await c.ws.send(f'{{"type":"ping","rid":{2**53 - 1}}}')
        assert await c.recv() == {"type": "pong", "rid": 2**53 - 1}
        await c.ws.send(f'{{"type":"ping","rid":{2**53}}}')
        err = await c.recv()
        assert (err["type"], err["field"]) == ("error", "rid")
        assert err["rid"] is None  # a rid that is not a valid one is not echoed
        # still the same session
        await c.send({"type": "ping", "rid": "alive"})
        assert await c.recv() == {"type": "pong", "rid": "alive"}
    no_traceback(srv)


@pytest.mark.parametrize("query", [f"after={v}" for v in [*HUGE, "-1", "1.5", "1e3", "0x1",
                                                          "9" * 5000]]
                         + [f"limit={v}" for v in [*HUGE, "0", "-1", "1.0", "1001"]])
async def test_http_query_integers_get_400_naming_the_parameter(srv: ServerProcess,
                                                                query: str) -> None:
    async with srv.http() as http:
        await http.post("/v1/notifications", json={"users": ["q"], "body": 1})
        r = await http.get(f"/v1/users/q/events?{query}")
        assert r.status_code == 400, r.text
        name = query.split("=", 1)[0]
        assert r.json()["error"]["field"] == name and f"'{name}'" in r.json()["error"]["message"]
    no_traceback(srv)


# (path, body with {v}, field)
BODIES = [
    ("/v1/notifications", '{{"users":["b"],"body":1,"ttl":{v}}}', "ttl"),
    ("/v1/notifications", '{{"users":["b"],"body":1,"ack":true,"ack_timeout_ms":{v}}}',
     "ack_timeout_ms"),
    ("/v1/notifications", '{{"users":["b"],"body":1,"push":{{"title":"t","badge":{v}}}}}',
     "push.badge"),
    ("/v1/notifications", '{{"users":["b"],"body":1,"push":{{"title":"t","ttl":{v}}}}}',
     "push.ttl"),
    ("/v1/users/b/read", '{{"seqs":[{v}]}}', "seqs"),
    ("/v1/users/b/read", '{{"ranges":[[1,{v}]]}}', "ranges"),
]


@pytest.mark.parametrize(("path", "body", "field"), BODIES,
                         ids=[f"{p} {f}" for p, _, f in BODIES])
async def test_http_body_integers_get_400_naming_the_field(srv: ServerProcess, path: str,
                                                           body: str, field: str) -> None:
    async with srv.http() as http:
        await http.post("/v1/notifications", json={"users": ["b"], "body": 1})
        for value in BAD:
            r = await http.post(path, content=body.format(v=value).encode())
            assert r.status_code == 400, (value, r.text)
            error = r.json()["error"]
            assert (error["code"], error["field"]) == ("invalid_request", field), (value, error)
    no_traceback(srv)


async def test_connect_after_out_of_range_closes_4104(server: ServerProcess) -> None:
    """``GET /v1/ws?after=`` beyond MAX_SEQ, or digits of another script: close 4104 naming
    ``after`` (docs/protocol.md, integer bounds), no traceback."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    for after in (str(2**63), str(2**64 - 1), "%C2%B2", "%D9%A3"):
        url = f"{server.ws_url}?token={server.token('a')}&after={after}"
        async with connect(url, open_timeout=10) as ws:
            with contextlib.suppress(ConnectionClosed):
                async for _ in ws:
                    pytest.fail(f"after={after}: a frame before the close")
        assert ws.protocol.close_rcvd is not None, after
        assert ws.protocol.close_rcvd.code == 4104 and "after" in ws.protocol.close_rcvd.reason
    no_traceback(server)
