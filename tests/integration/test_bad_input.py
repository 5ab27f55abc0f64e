"""Bad input gets its documented status / close code and a message naming the problem,
and nothing accepted before is lost."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.rawws import RawWs
from tests.support.server import ServerProcess, running_server
from tests.support.waiting import wait_for
from tests.support.ws import ws_client


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    path: Path = tmp_path_factory.mktemp("bad")
    with running_server(path, "--allowed-origins", "https://app.example",
                        "--max-frame-bytes", "2048", "--max-request-bytes", "4096") as s:
        yield s


@pytest.fixture
async def stored(srv: ServerProcess) -> AsyncIterator[list[int]]:
    """Events accepted before the bad input; the test checks they are all still there."""
    user = f"keep-{time.monotonic_ns()}"
    async with srv.http() as http:
        seqs = []
        for i in range(3):
            r = await http.post("/v1/notifications", json={"users": [user], "body": {"i": i}})
            seqs.append(r.json()["results"][0]["seq"])
    yield seqs
    async with srv.http() as http:
        r = await http.get(f"/v1/users/{user}/events")
        assert [e["seq"] for e in r.json()["events"]] == seqs


async def close_of(srv: ServerProcess, token: str, **kw: object) -> tuple[int, str]:
    async with connect(f"{srv.ws_url}?token={token}", open_timeout=10, **kw) as ws:  # type: ignore[arg-type]
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pytest.fail("server sent a frame to an unauthenticated client")
    assert ws.protocol.close_rcvd is not None
    return ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason


@pytest.mark.parametrize(
    ("make_token", "code", "words"),
    [
        (lambda s: "not-a-jwt", 4100, "malformed"),
        (lambda s: s.token("u", ttl=-60), 4101, "expired"),
        (lambda s: jwt.encode({"sub": "u", "exp": int(time.time()) + 60}, None, algorithm="none"),
         4100, "algorithm 'none'"),
        (lambda s: jwt.encode({"sub": "u", "exp": int(time.time()) + 60}, "x" * 32,
                              algorithm="HS256"), 4100, "signature"),
        (lambda s: jwt.encode({"sub": "u"}, s.env["PUSHGATE_JWT_SECRET"], algorithm="HS256"),
         4100, "'exp'"),
        (lambda s: "", 4100, "missing"),
        # a lone surrogate (a backend that cut a UTF-16 string): the session failed later,
        # at each frame (internal) and its user's session list (500); in a cluster no hello
        (lambda s: jwt.encode({"sub": "u", "dev": "\ud800", "exp": int(time.time()) + 60},
                              s.env["PUSHGATE_JWT_SECRET"], algorithm="HS256"),
         4100, "token claim dev is not valid Unicode (it holds a lone surrogate)"),
        (lambda s: jwt.encode({"sub": "\ud800", "exp": int(time.time()) + 60},
                              s.env["PUSHGATE_JWT_SECRET"], algorithm="HS256"),
         4100, "token claim sub is not valid Unicode"),
        # RFC 7519: a NumericDate is a number (PyJWT takes a string of digits)
        (lambda s: jwt.encode({"sub": "u", "exp": str(int(time.time()) + 60)},
                              s.env["PUSHGATE_JWT_SECRET"], algorithm="HS256"),
         4100, "token claim 'exp' must be a number (NumericDate)"),
    ],
    ids=["invalid", "expired", "alg-none", "wrong-key", "no-exp", "missing", "surrogate-dev",
         "surrogate-sub", "exp-string"],
)
async def test_bad_tokens_close_with_documented_code(srv: ServerProcess, stored: list[int],
                                                     make_token, code: int, words: str) -> None:
    got_code, reason = await close_of(srv, make_token(srv))
    assert got_code == code
    assert words in reason


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_close_reasons_echoing_non_ascii_input_fit_the_close_frame(
        srv: ServerProcess, stored: list[int]) -> None:
    """A reason quotes client input (a token's alg, an Origin): cut to 120 UTF-8 bytes,
    so the close frame (at most 125 bytes) is still sent with its code."""
    header = _b64(json.dumps({"alg": "é" * 100, "typ": "JWT"}).encode())
    token = f"{header}.{_b64(b'{}')}.{_b64(b'sig')}"
    code, reason = await close_of(srv, token)
    assert code == 4100 and "algorithm" in reason and len(reason.encode()) <= 120
    # (the websockets client sends no such header: a raw one does)
    ws = await RawWs.connect(srv.port, f"/v1/ws?token={srv.token('u')}",
                             extra_headers="Origin: https://" + "€" * 60 + ".example\r\n")
    try:
        code, reason = (await ws.next_frame()).close
    finally:
        ws.abort()
    assert code == 4103 and "origin" in reason and 100 < len(reason.encode()) <= 120
    assert "control frame too long" not in srv.log_text()


async def test_foreign_origin(srv: ServerProcess, stored: list[int]) -> None:
    code, reason = await close_of(srv, srv.token("u"), origin="https://evil.example")
    assert code == 4103 and "https://evil.example" in reason
    # the allowed origin and non-browser clients (no Origin) get in
    async with ws_client(srv, "u", origin="https://app.example") as c:
        assert c.hello["user"] == "u"


async def test_oversize_http_body_is_413(srv: ServerProcess, stored: list[int]) -> None:
    async with srv.http() as http:
        r = await http.post("/v1/notifications",
                            json={"users": ["u"], "body": {"pad": "x" * 5000}})
        assert r.status_code == 413
        assert r.json()["error"]["field"] == "body" and "4096" in r.json()["error"]["message"]


async def test_oversize_frame_is_1009(srv: ServerProcess, stored: list[int]) -> None:
    async with ws_client(srv, "u") as c:
        await c.send({"type": "ping", "pad": "x" * 3000})
        code, reason = await c.closed()
        assert code == 1009 and "limit" in reason


async def test_malformed_json_closes_4104(srv: ServerProcess, stored: list[int]) -> None:
    async with ws_client(srv, "u") as c:
        await c.ws.send("{not json")
        code, reason = await c.closed()
        assert code == 4104 and "JSON" in reason


async def test_unknown_frame_type_answers_error_and_keeps_session(srv: ServerProcess,
                                                                  stored: list[int]) -> None:
    async with ws_client(srv, "u") as c:
        err = await c.request({"type": "subscribe"})
        assert err["type"] == "error" and err["code"] == "unknown_type"
        assert "subscribe" in err["message"] and err["field"] == "type"
        err = await c.request({"type": "fetch", "limit": 0})
        assert err["code"] == "invalid_request" and err["field"] == "limit"
        await c.send({"type": "ping", "rid": 1})
        assert await c.recv() == {"type": "pong", "rid": 1}


@pytest.mark.parametrize(("query", "field"), [
    ("limit=0", "limit"), ("limit=abc", "limit"), ("limit=100000", "limit"),
    ("after=-1", "after"), ("after=x", "after")])
async def test_bad_limit_or_after(srv: ServerProcess, stored: list[int], query: str,
                                  field: str) -> None:
    async with srv.http() as http:
        await http.post("/v1/notifications", json={"users": ["q"], "body": 1})
        r = await http.get(f"/v1/users/q/events?{query}")
        assert r.status_code == 400
        assert r.json()["error"]["field"] == field and field in r.json()["error"]["message"]


async def test_unknown_user_is_404(srv: ServerProcess, stored: list[int]) -> None:
    async with srv.http() as http:
        for path in ("/v1/users/nobody/events", "/v1/users/nobody/read-state"):
            r = await http.get(path)
            assert r.status_code == 404
            assert r.json()["error"]["code"] == "unknown_user" and "nobody" in r.json()["error"]["message"]


async def test_wrong_method_is_405_with_allow(srv: ServerProcess, stored: list[int]) -> None:
    async with srv.http() as http:
        r = await http.delete("/v1/users/u/events")
        assert r.status_code == 405 and "GET" in r.headers["allow"].split(", ")
        assert r.json()["error"]["code"] == "method_not_allowed"


async def test_the_405_of_the_send_path_lists_its_get_too(srv: ServerProcess) -> None:
    async with srv.http() as http:
        for method in ("PUT", "DELETE", "PATCH"):
            r = await http.request(method, "/v1/notifications")
            assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST"
            assert r.json()["error"]["code"] == "method_not_allowed"
        assert (await http.get("/v1/notifications", params={"limit": 1})).status_code == 200


@pytest.mark.parametrize("path", ["/v1/users/u1/events/", "/healthz/", "/v1/users/u1/read-state/"])
async def test_a_trailing_slash_is_an_unknown_path_not_a_redirect(
        srv: ServerProcess, path: str) -> None:
    async with srv.http() as http:
        r = await http.get(path, headers={"Host": "evil.example"})
        assert r.status_code == 404 and "location" not in r.headers
        assert r.json()["error"]["code"] == "not_found"
        r = await http.post("/v1/users/u1/read/", json={"seqs": [1]})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(("method", "path", "field"), [
    ("GET", "/v1/users/a%0Ab/events", "user"),
    ("GET", "/v1/users/%0A/read-state", "user"),
    ("GET", "/v1/users/ab%0A/sessions", "user"),
    ("POST", "/v1/users/a%0Ab/read", "user"),
    ("GET", "/v1/notifications/%0Ax", "report"),
    ("GET", "/v1/notifications/x%0A", "report"),
    ("GET", "/v1/notifications/r/users/a%0Ab", "user"),
])
async def test_a_newline_in_a_path_id_is_a_400_naming_it_like_any_control_character(
        srv: ServerProcess, method: str, path: str, field: str) -> None:
    async with srv.http() as http:
        r = await http.request(method, path, json={"seqs": [1]} if method == "POST" else None)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert (error["code"], error["field"]) == ("invalid_request", field)
        assert "control characters" in error["message"]


async def test_body_nesting_limit_is_a_400_that_says_so(srv: ServerProcess) -> None:
    async with srv.http() as http:
        ok = "[" * 254 + "1" + "]" * 254
        r = await http.post("/v1/notifications", content=f'{{"users":["deep"],"body":{ok}}}')
        assert r.status_code == 200, r.text
        deep = "[" * 255 + "1" + "]" * 255
        r = await http.post("/v1/notifications", content=f'{{"users":["deep"],"body":{deep}}}')
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["field"] == "body" and "nested deeper than 254" in error["message"]


async def test_a_push_nested_too_deeply_is_a_400_naming_its_field(srv: ServerProcess,
                                                                  stored: list[int]) -> None:
    """``push.data`` 260 levels deep: a cluster's hub answered 500 ``internal`` (its
    encoding for the router failed), the embedded gateway 200 and then no push; 253
    levels, what a push block holds, are accepted."""
    def nested(levels: int) -> object:
        value: object = 1
        for _ in range(levels):
            value = [value]
        return value

    async with srv.http() as http:
        r = await http.post("/v1/notifications", json={
            "users": ["deep"], "body": 1, "push": {"title": "t", "data": {"k": nested(260)}}})
        assert r.status_code == 400, r.text
        assert r.json()["error"] == {
            "code": "invalid_request", "retryable": False, "field": "push.data",
            "message": "'push.data' is nested deeper than 253 levels"}
        r = await http.post("/v1/notifications", json={
            "users": ["deep"], "body": 1, "push": {"title": "t", "data": {"k": nested(252)}}})
        assert r.status_code == 200, r.text


async def test_an_empty_push_app_is_refused_with_the_rule_of_an_id(srv: ServerProcess) -> None:
    async with srv.http() as http:
        for app in ("", "a" * 256, "   "):
            r = await http.post("/v1/notifications", json={
                "users": ["p"], "body": 1, "push": {"title": "t", "app": app}})
            assert r.status_code == 400
            error = r.json()["error"]
            assert error["field"] == "push.app" and "1..255 characters" in error["message"]


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/open-connection", {"user": "   "}, "user"),
    ("/v1/open-connection", {"user": "a", "workspace": " "}, "workspace"),
    ("/v1/open-connection", {"user": "a", "device": "  "}, "device"),
    ("/v1/open-connection", {"user": "a", "application": "\u00a0"}, "application"),
    ("/open-connection", {"client": {"accountId": "  "}}, "client.accountId"),
    ("/open-connection", {"client": {"accountId": "a", "deviceId": " "}}, "client.deviceId"),
], ids=["user", "workspace", "device", "application", "pushca-account", "pushca-device"])
async def test_a_token_for_a_blank_id_is_refused_when_asked_for(
        srv: ServerProcess, path: str, body: dict, field: str) -> None:
    """http-api.md: ids are "not all spaces". A token was minted (200) for a blank id,
    and every connect with it was then closed with 4100, which clients do not retry."""
    async with srv.http() as http:
        r = await http.post(path, json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"] == {
            "code": "invalid_request", "retryable": False, "field": field,
            "message": f"'{field}' is blank: an id needs a character other than spaces"}
        # a device's app likewise (it was stored as "   ")
        r = await http.put("/v1/users/blank-app/devices",
                           json={"platform": "fcm", "token": "t-blank", "app": "   "})
        assert (r.status_code, r.json()["error"]["field"]) == (400, "app"), r.text


async def test_wrong_api_key_is_401(srv: ServerProcess, stored: list[int]) -> None:
    async with srv.http() as http:
        for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": ""}):
            r = await http.post("/v1/notifications", json={"users": ["u"], "body": 1},
                                headers=headers)
            assert r.status_code == 401 and r.json()["error"]["field"] == "Authorization"


@pytest.mark.parametrize(("body", "field"), [
    ({"body": 1}, "users"),
    ({"users": [], "body": 1}, "users"),
    ({"users": ["u"]}, "body"),
    ({"users": ["u"], "body": 1, "ttl": -1}, "ttl"),
    ({"users": ["u"], "body": 1, "colour": "red"}, "colour"),
    ({"users": ["u", "v"], "body": 1, "ack": True}, "users"),
    ({"filter": {"workspace": 3}, "body": 1}, "filter.workspace"),
])
async def test_bad_send_bodies_name_the_field(srv: ServerProcess, stored: list[int], body: dict,
                                              field: str) -> None:
    async with srv.http() as http:
        r = await http.post("/v1/notifications", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["field"] == field
    async with srv.http() as http:
        r = await http.post("/v1/notifications", content=b"{oops",
                            headers={"content-type": "application/json"})
        assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]


@pytest.mark.parametrize("app", ["com.\x01app", "com.app\x1f", "com.\x85app", "x" * 256],
                         ids=["c0", "c0-last", "c1", "256-characters"])
async def test_a_device_app_is_an_id_on_every_path(srv: ServerProcess, stored: list[int],
                                                   app: str) -> None:
    """Control characters (and over 255 characters) in a device's ``app`` are refused as in
    every other id — PUT (API key), POST /v1/devices (client token), the websocket's
    ``register_device`` — and nothing is stored."""
    device = {"platform": "fcm", "token": "tok-app-check", "app": app}
    async with srv.http() as http:
        r = await http.put("/v1/users/dev-app/devices", json=device)
        assert (r.status_code, r.json()["error"]["field"]) == (400, "app"), r.text
        r = await http.post("/v1/devices", json=device,
                            headers={"authorization": f"Bearer {srv.token('dev-app')}"})
        assert (r.status_code, r.json()["error"]["field"]) == (400, "app"), r.text
    async with ws_client(srv, "dev-app") as c:
        err = await c.request({"type": "register_device", **device})
        assert (err["type"], err["code"], err["field"]) == ("error", "invalid_request", "app")
    async with srv.http() as http:
        assert (await http.get("/v1/users/dev-app/devices")).json() == {"devices": []}


@pytest.mark.parametrize("path", ["/v1/notifications", "/v1/users/gz/read"])
async def test_a_compressed_body_is_refused_saying_so(srv: ServerProcess, stored: list[int],
                                                      path: str) -> None:
    """A client that gzips its body is told that, not that its JSON has bad UTF-8
    (``Content-Encoding: gzip`` named; without the header, the body's gzip magic);
    nothing is stored."""
    import gzip

    coded = gzip.compress(b'{"users": ["gz"], "body": 1}')
    async with srv.http() as http:
        r = await http.post(path, content=coded, headers={"content-encoding": "gzip"})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["field"] == "Content-Encoding" and "'gzip' is not supported" in \
            error["message"]
    async with srv.http() as http:  # (that connection was closed)
        r = await http.post(path, content=coded)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["field"] == "body" and "compressed" in error["message"]
        assert "Content-Encoding" in error["message"]
        assert (await http.get("/v1/users/gz/events")).status_code == 404  # no inbox


async def test_head_reads_and_never_writes(srv: ServerProcess, stored: list[int]) -> None:
    """HEAD is GET without the body: on the devices route (GET, PUT, DELETE) a HEAD with
    a device in its body registers nothing."""
    async with srv.http() as http:
        device = {"platform": "fcm", "token": "from-head", "app": "a"}
        r = await http.request("HEAD", "/v1/users/hd/devices", json=device)
        assert r.status_code == 200 and r.content == b""
        assert (await http.get("/v1/users/hd/devices")).json() == {"devices": []}
        assert (await http.head("/v1/users/hd/devices")).status_code == 200


async def test_a_client_gone_mid_body_is_not_logged_as_a_failure(
        srv: ServerProcess, stored: list[int]) -> None:
    """A client that closes while the server reads its body: nothing to answer, and no
    ``Exception in ASGI application`` traceback per such request in the server's log."""
    for path in (b"/v1/users/gone/read", b"/v1/open-connection", b"/send-notification"):
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"POST " + path + b" HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
                     + srv.api_key.encode() + b"\r\nContent-Length: 100\r\n\r\n{")
        writer.write_eof()
        # the server saw the end (its request task is woken before any later request)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # and did not answer
        writer.close()
    async with srv.http() as http:  # served after those requests ended
        assert (await http.get("/healthz")).status_code == 200
    assert "Exception in ASGI application" not in srv.log_text()


async def test_ids_holding_a_slash_are_reachable_percent_encoded(
        srv: ServerProcess, stored: list[int]) -> None:
    """Ids may hold "/" (docs/http-api.md): sent as %2F in a path, they name the same
    inbox and report as in the send that created them."""
    async with srv.http() as http:
        r = await http.post("/v1/notifications",
                            json={"users": ["org/ann", "x/users/y"], "body": 1, "id": "ord/1"})
        assert r.status_code == 200, r.text
        assert r.json()["report"] == "ord/1"
        r = await http.post("/v1/notifications",
                            json={"users": ["org/ann"], "body": 2, "id": "a/users/b"})
        assert r.status_code == 200, r.text
        events = (await http.get("/v1/users/org%2Fann/events")).json()["events"]
        assert [e["id"] for e in events] == ["ord/1", "a/users/b"]
        r = await http.post("/v1/users/org%2Fann/read", json={"seqs": [1]})
        assert r.json()["unread"] == 1
        assert (await http.get("/v1/users/org%2Fann/read-state")).json()["read"] == [[1, 1]]
        assert (await http.get("/v1/users/org%2Fann/sessions")).json() == {"sessions": []}
        assert (await http.get("/v1/users/org%2Fann/devices")).json() == {"devices": []}
        for encoded, report in (("ord%2F1", "ord/1"), ("a%2Fusers%2Fb", "a/users/b")):
            async def found(encoded: str = encoded) -> Any:  # (reports are written in batches)
                r = await http.get(f"/v1/notifications/{encoded}")
                return r.status_code == 200 and r.json()
            assert (await wait_for(found, 10, f"report {report}"))["report"] == report
        user = (await http.get("/v1/notifications/ord%2F1/users/x%2Fusers%2Fy")).json()
        assert (user["report"], user["user"], user["seq"]) == ("ord/1", "x/users/y", 1)
        # an id is one segment: a path of other segments is not one of these routes
        # (it would name other ids if its decoded form were routed)
        for path in ("/v1/users/org/ann/events", "/v1/notifications/ord%2F1/extra",
                     "/v1/notifications/ord%2F1/users", "/v1/notifications/ord/1",
                     "/v1/notifications/ord%2F1/users/x%2Fusers%2Fy/extra"):
            r = await http.get(path)
            assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found"), path


async def test_unknown_paths_and_methods_are_counted_as_errors(srv: ServerProcess) -> None:
    """docs/operations.md: pushgate_errors_total counts the errors reported to callers,
    by code: the 404 of an unknown path, the 405 of a wrong method and the 426 of a
    GET of /v1/ws without an upgrade too."""
    def count(text: str, code: str) -> float:
        line = f'pushgate_errors_total{{code="{code}"}} '
        return sum(float(x[len(line):]) for x in text.splitlines() if x.startswith(line))

    async with srv.http() as http:
        before = (await http.get("/metrics")).text
        assert (await http.get("/v1/nothing")).status_code == 404
        assert (await http.delete("/v1/notifications")).status_code == 405
        assert (await http.post("/healthz")).status_code == 405
        assert (await http.get("/v1/ws")).status_code == 426  # no upgrade
        after = (await http.get("/metrics")).text
    assert count(after, "not_found") == count(before, "not_found") + 1
    assert count(after, "method_not_allowed") == count(before, "method_not_allowed") + 2
    assert count(after, "invalid_request") == count(before, "invalid_request") + 1
