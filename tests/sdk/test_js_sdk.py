"""The JS SDK in a real headless Chromium (Debian's chromium, driven by playwright-core
through clients/js/test/browser-driver.mjs) against the live gateway: connect, receive,
ack, read, send, reconnect after the server restarts (SIGTERM and SIGKILL), back off
when nothing listens. Also the JS SDK's own tests (node --test, as ``npm test``: a fake
gateway, and refused connects with Node 20's built-in WebSocket and ``ws``) and a Node 20
run with its built-in WebSocket against the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.sdk.conftest import make_server
from tests.support.browser import browser
from tests.support.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "clients" / "js"

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


class _Handler(SimpleHTTPRequestHandler):
    """Serves clients/js and mints gateway tokens at /token (the app's backend)."""

    srv: ServerProcess

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/token":
            return super().do_GET()
        q = parse_qs(url.query)
        token = self.srv.token(q["user"][0], ttl=float(q.get("ttl", ["600"])[0]))
        body = json.dumps({"token": token}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return None

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def page_server(srv: ServerProcess) -> Iterator[str]:
    handler = type("Handler", (_Handler,), {"srv": srv})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(JS)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(5)


async def post(srv: ServerProcess, user: str, body: Any, **fields: Any) -> httpx.Response:
    async with srv.http() as http:
        return await http.post("/v1/notifications", json={"users": [user], "body": body, **fields})


@needs_node
async def test_js_sdk_in_headless_chromium(tmp_path: Path) -> None:
    srv = make_server(tmp_path)
    srv.start()
    user = "jsu"
    try:
        with page_server(srv) as base:
            async with browser() as b:
                await b.call("goto", url=f"{base}/test/harness.html")
                session = await b.eval(
                    f"harness.start({{url: {json.dumps(srv.base_url)}, user: '{user}', after: 0,"
                    " backoff: {base: 200, cap: 1000}})")
                assert isinstance(session, str) and len(session) == 32

                # receive
                for n in (1, 2, 3):
                    assert (await post(srv, user, {"n": n})).status_code == 200
                events = await b.eval("harness.waitEvents(3)")
                assert [(e["seq"], e["body"]) for e in events] == [(1, {"n": 1}), (2, {"n": 2}),
                                                                   (3, {"n": 3})]
                # ack: a send-with-ack completes only when the page's SDK acks it
                r = await post(srv, user, {"n": 4}, ack=True, ack_timeout_ms=5000)
                assert r.status_code == 200, r.text
                assert r.json()["results"][0]["acked_by"] == session
                await b.eval("harness.waitEvents(4)")
                # read / read_state / send / transient
                res = await b.eval("harness.client.read({seqs: [1, 2], ranges: [[4, 4]]})")
                assert res == {"head": 4, "unread": 1, "live": 4}
                state = await b.eval("harness.client.readState()")
                assert state["read"] == [[1, 2], [4, 4]] and state["unread"] == 1
                sent = await b.eval("harness.client.send({hi: 1}, {users: ['other']})")
                assert sent["results"][0]["user"] == "other" and sent["results"][0]["seq"] == 1
                assert sent["report"].startswith("r-")  # the send's delivery report id
                err = await b.eval("harness.client.fetch({limit: 100000}).catch(e => [e.name, e.code, e.field])")
                assert err == ["RequestError", "invalid_request", "limit"]
                assert (await post(srv, user, "typing", ttl=0)).status_code == 200
                events = await b.eval("harness.waitEvents(5)")
                assert events[-1]["transient"] and events[-1]["body"] == "typing"

                # restarts: events sent while the page is away arrive once, in order
                expected = 4
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    await asyncio.to_thread(srv.stop, sig)
                    await asyncio.to_thread(srv.start)
                    for _ in range(3):  # the page may still be in its backoff
                        r = await post(srv, user, {"n": expected + 1})
                        assert r.status_code == 200
                        expected += 1
                    await b.eval(f"harness.waitEvents({expected + 1})")  # + the transient one
                    await b.eval("harness.client.waitConnected(10000)")
                await asyncio.sleep(0.3)  # duplicates, if any, would arrive now
                seqs = await b.eval("harness.seqs()")
                assert seqs == list(range(1, expected + 1))
                closes = await b.eval("harness.closes")
                assert 4000 in closes and 1006 in closes
                assert await b.eval("harness.client.connects") >= 3
                assert await b.eval("harness.errors") == []
                # a large event is announced by `head` and fetched by the SDK
                assert (await post(srv, user, {"big": "x" * 6000})).status_code == 200
                events = await b.eval(f"harness.waitEvents({expected + 2})")
                assert events[-1]["seq"] == expected + 1 and len(events[-1]["body"]["big"]) == 6000
                await b.eval("harness.client.close()")
                assert await b.eval("harness.client.state") == "disconnected"
    finally:
        srv.stop()


@needs_node
async def test_js_sdk_kicked_in_chromium(tmp_path: Path) -> None:
    srv = make_server(tmp_path)
    srv.start()
    try:
        with page_server(srv) as base:
            async with browser() as b:
                await b.call("goto", url=f"{base}/test/harness.html")
                await b.eval(f"harness.start({{url: {json.dumps(srv.base_url)}, user: 'k',"
                             " backoff: {base: 50, cap: 100}})")
                extra = [f"new PushgateClient({{url: {json.dumps(srv.base_url)}, "
                         f"token: {json.dumps(srv.token('k'))}}}).waitConnected(10000)"
                         for _ in range(5)]
                await b.eval("import('/src/index.js').then(({PushgateClient}) => "
                             f"Promise.all([{', '.join(extra)}]))")
                await b.eval("harness.client.closedPromise.catch(() => null)")
                errors = await b.eval("harness.errors")
                assert {"name": "KickedError", "code": 4102} in errors
                assert any(e.get("from") == "iterator" for e in errors)
                await asyncio.sleep(0.5)
                assert await b.eval("[harness.client.state, harness.client.connects, harness.tokens]") \
                    == ["disconnected", 1, 1]
    finally:
        srv.stop()


def _refused_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@needs_node
async def test_js_sdk_refused_connects_back_off_in_chromium(tmp_path: Path) -> None:
    """Nothing listens: a browser fires `error` and then `close` for each refused connect.
    Each attempt is handled once (one `disconnected`) and the next one follows the
    backoff window (random fixed at 0.9: 0.9 x 100, 200, 400, 800, 800 ms)."""
    srv = make_server(tmp_path)  # never started: the page server only serves files here
    port = _refused_port()
    with page_server(srv) as base:
        async with browser() as b:
            await b.call("goto", url=f"{base}/test/harness.html")
            result = await b.eval(
                "import('/src/index.js').then(({PushgateClient}) => new Promise((resolve, reject) => {"
                " const started = [], closes = [];"
                " class Recording extends WebSocket {"
                "   constructor(...a) { started.push(performance.now()); super(...a); } }"
                f" const c = new PushgateClient({{url: 'http://127.0.0.1:{port}',"
                "   token: 'a.eyJleHAiOjk5OTk5OTk5OTl9.b', WebSocket: Recording,"
                "   backoff: {base: 100, cap: 800}, random: () => 0.9, connectTimeoutMs: 3000});"
                " const timer = setTimeout(() => c.close().then(() =>"
                "   reject(new Error('only ' + JSON.stringify(closes)))), 8000);"
                " c.on('disconnected', (i) => {"
                "   closes.push([i.code, i.byClient, started.length]);"
                "   if (closes.length === 6) {"
                "     clearTimeout(timer);"
                "     c.close().then(() => resolve({started, closes}));"
                "   } });"
                " c.start(); }))")
    closes, started = result["closes"], result["started"]
    assert closes == [[1006, False, n] for n in range(1, 7)], closes  # one per attempt
    for k, window in enumerate((100, 200, 400, 800, 800)):
        gap = started[k + 1] - started[k]
        assert 0.9 * window - 2 <= gap <= 0.9 * window + 600, (k, gap, started)


@needs_node
async def test_js_unit_tests_and_node_websocket(tmp_path: Path) -> None:
    # what `npm test` runs (package.json)
    proc = await asyncio.create_subprocess_exec(
        "node", "--experimental-websocket", "--no-warnings", "--test", "test/units.test.js",
        "test/client.test.js", cwd=str(JS), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, out.decode()
    assert b"# skipped 0" in out, out.decode()  # built-in WebSocket and ws both tested

    srv = make_server(tmp_path)
    srv.start()
    try:
        async with srv.http() as http:
            for body in ("first", "second", "third"):
                await http.post("/v1/notifications", json={"users": ["nod"], "body": body})
        proc = await asyncio.create_subprocess_exec(
            "node", "--experimental-websocket", "--no-warnings", "test/node-smoke.mjs",
            srv.base_url, srv.token("nod"), cwd=str(JS), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, out.decode()
        result = json.loads(out.decode().strip().splitlines()[-1])
        assert result["seqs"] == [1, 2, 3] and result["body"] == "first" and result["pingMs"] >= 0
        # lastSeq is what the for-await consumer has seen, not what the SDK received
        assert result["lastSeqs"] == [1, 3]
    finally:
        srv.stop()
