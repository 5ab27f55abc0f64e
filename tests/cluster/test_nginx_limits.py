"""The shipped nginx configuration (deploy/nginx/pushgate.conf) applies the hubs' per-IP
limits and deadlines at the edge, with the hubs' JSON error bodies: a real nginx,
rendered by the local launcher, in front of one real hub. Clients come from 127.0.0.x
addresses other than 127.0.0.1, which the file leaves unlimited (local probes; the
launcher's own clients)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from deploy.local.nginx import TEMPLATE, PrivateNginx, Value
from tests.cluster.test_deploy_files import DEFAULTS, directives, one, seconds
from tests.support.ports import refused_port
from tests.support.server import ServerProcess, running_server
from tests.support.waiting import wait_for

LIMIT_CONN = 150
HEADER_TIMEOUT = 1.0


class QuickNginx(PrivateNginx):
    """The template with short client timeouts (the tagged lines), for the tests."""

    def values(self) -> dict[str, Value]:
        return {**super().values(), "client_header_timeout": f"{HEADER_TIMEOUT:g}s",
                "client_body_timeout": f"{HEADER_TIMEOUT:g}s"}


@pytest.fixture(scope="module")
def edge(cluster_binaries: None, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[QuickNginx, ServerProcess]]:
    """nginx -> one embedded hub that trusts it; the hub's own open-connection rate is
    off, so every 429 here is nginx's."""
    base = tmp_path_factory.mktemp("edge")
    with running_server(base, PUSHGATE_TRUSTED_PROXIES="127.0.0.1",
                        PUSHGATE_OPEN_CONNECTION_RATE_PER_IP="0") as hub:
        nginx = QuickNginx(base / "nginx", [f"127.0.0.1:{hub.port}"], limit_conn=LIMIT_CONN,
                           access_log=False)
        nginx.start()
        try:
            yield nginx, hub
        finally:
            nginx.stop()


async def exchange(port: int, data: bytes, source: str, timeout: float = 10.0
                   ) -> tuple[int | None, dict[str, str], bytes, float]:
    """Send ``data`` on a new connection from ``source``; read until the server closes.
    Returns status (None: closed without a reply), headers, body, seconds taken."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    started = time.monotonic()
    writer.write(data)
    out = b""
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                out += chunk
                if b"\r\n\r\n" in out and _complete(out):
                    break
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    elapsed = time.monotonic() - started
    if not out:
        return None, {}, b"", elapsed
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body, elapsed


def _complete(out: bytes) -> bool:
    head, _, body = out.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def error_of(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert headers["content-type"] == "application/json"
    error: dict[str, Any] = orjson.loads(body)["error"]
    assert {"code", "message", "retryable"} <= set(error) <= \
        {"code", "message", "retryable", "field"}
    return error


def get(path: str = "/healthz", extra: bytes = b"") -> bytes:
    return (b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            + extra + b"\r\n")


def test_the_file_sets_the_hubs_limits() -> None:
    """Values line up with the settings' defaults (docs/operations.md)."""
    conf = TEMPLATE.read_text()
    zones = {args[1].split("=")[1].split(":")[0]: args for n, args in directives(conf)
             if n == "limit_req_zone"}
    assert zones["pushgate_connect"][2] == f"rate={DEFAULTS.connect_rate_per_ip:g}r/s"
    assert zones["pushgate_open_connection"][2] == \
        f"rate={DEFAULTS.open_connection_rate_per_ip:g}r/s"
    limit_req = {args[0].removeprefix("zone="): args[1:] for n, args in directives(conf)
                 if n == "limit_req"}
    assert limit_req["pushgate_connect"] == [f"burst={DEFAULTS.connect_rate_per_ip:g}",
                                             "nodelay"]
    assert limit_req["pushgate_open_connection"] == \
        [f"burst={DEFAULTS.open_connection_rate_per_ip:g}", "nodelay"]
    # the keyless open-connection's limit, over every hub (each hub counts only its own)
    assert zones["pushgate_keyless_open"][2] == \
        f"rate={DEFAULTS.pushca_public_rate_per_ip:g}r/s"
    assert limit_req["pushgate_keyless_open"] == \
        [f"burst={DEFAULTS.pushca_public_burst:g}", "nodelay"]
    assert one(conf, "limit_conn") == ["pushgate_perip", str(DEFAULTS.max_connections_per_ip)]
    assert one(conf, "limit_req_status") == one(conf, "limit_conn_status") == ["429"]
    assert seconds(one(conf, "client_header_timeout")[0]) == DEFAULTS.header_timeout_s
    # above the hubs' own: their 408 answers a body that stops, not nginx's silent close
    assert DEFAULTS.request_timeout_s < seconds(one(conf, "client_body_timeout")[0]) \
        <= DEFAULTS.request_timeout_s + 10
    _, size = one(conf, "large_client_header_buffers")
    assert int(size.removesuffix("k")) * 1024 == DEFAULTS.max_header_bytes
    pages = {args[-1]: args[:-1] for n, args in directives(conf) if n == "error_page"}
    assert pages == {"/_pushgate/400": ["400", "501", "505", "=400"],
                     "/_pushgate/404": ["404"], "/_pushgate/405": ["405"],
                     "/_pushgate/413": ["413"], "/_pushgate/429": ["429"],
                     "/_pushgate/431": ["414", "494", "=431"], "/_pushgate/500": ["500"],
                     "/_pushgate/502": ["502", "503"], "/_pushgate/504": ["504"]}


async def test_connection_limit_is_a_json_429_while_another_ip_is_served(
        edge: tuple[QuickNginx, ServerProcess]) -> None:
    nginx, hub = edge
    held = []
    try:
        for i in range(LIMIT_CONN):  # open websockets: each one an nginx request under way
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", nginx.port, local_addr=("127.0.0.20", 0))
            writer.write(f"GET /v1/ws?token={hub.token(f'u{i}')} HTTP/1.1\r\nHost: t\r\n"
                         "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n".encode())
            assert b" 101 " in await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            held.append(writer)
        status: int | None = None
        headers: dict[str, str] = {}
        body = b""
        for _ in range(50):  # until nginx has counted them all
            status, headers, body, _ = await exchange(nginx.port, get(), "127.0.0.20")
            if status == 429:
                break
            await asyncio.sleep(0.1)
        assert status == 429, (status, body)
        error = error_of(headers, body)
        assert error["code"] == "too_many_connections" and error["retryable"] is True
        assert headers["retry-after"] == "1"
        status, _, _, _ = await exchange(nginx.port, get(), "127.0.0.21")
        assert status == 200
    finally:
        for writer in held:
            writer.close()


async def test_connect_rate_is_a_json_429_rate_limited(edge: tuple[QuickNginx, ServerProcess]) -> None:
    nginx, _ = edge
    results = []
    for _ in range(8):  # 800 new connections in well under a second, 100 at a time
        results += await asyncio.gather(*(exchange(nginx.port, get(), "127.0.0.22")
                                          for _ in range(100)))
    statuses = [r[0] for r in results]
    assert statuses.count(200) >= DEFAULTS.connect_rate_per_ip  # the burst
    refused = [r for r in results if r[0] == 429]
    assert refused, statuses
    assert {error_of(r[1], r[2])["code"] for r in refused} == {"rate_limited"}
    assert (await exchange(nginx.port, get(), "127.0.0.23"))[0] == 200
    assert (await exchange(nginx.port, get(), "127.0.0.1"))[0] == 200  # unlimited


async def test_open_connection_rate_is_a_json_429_rate_limited(
        edge: tuple[QuickNginx, ServerProcess]) -> None:
    nginx, hub = edge
    key = hub.api_key
    reader, writer = await asyncio.open_connection("127.0.0.1", nginx.port,
                                                   local_addr=("127.0.0.24", 0))
    body = b'{"user":"olga"}'
    request = (b"POST /v1/open-connection HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
               + key.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    statuses = []
    try:
        for _ in range(int(DEFAULTS.open_connection_rate_per_ip) + 5):  # one keep-alive connection
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode().split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.partition(":") for line in lines[1:] if line)}
            reply = await reader.readexactly(int(headers["content-length"]))
            statuses.append(int(lines[0].split()[1]))
    finally:
        writer.close()
    assert statuses.count(200) >= DEFAULTS.open_connection_rate_per_ip
    assert statuses[-1] == 429
    error = error_of(headers, reply)
    assert error["code"] == "rate_limited" and headers["retry-after"] == "1"


@pytest.mark.parametrize(("request_head", "status", "code"), [
    (b"POST /v1/notifications HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "invalid_request"),
    (b"POST /v1/notifications HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
     b"Content-Length: 3\r\n\r\n{}", 400, "invalid_request"),
    (b"HELLO\r\n\r\n", 400, "invalid_request"),
    (b"GET /healthz HTTP/1.1\r\nHost: t\r\nCookie: " + b"c" * 20000 + b"\r\n\r\n", 431,
     "header_too_large"),
    (b"GET /healthz?" + b"q" * 20000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 431,
     "header_too_large"),
    (b"POST /v1/notifications HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n", 413,
     "payload_too_large"),
    # refused by nginx itself: an unknown transfer coding (501), an HTTP version above 1.x
    # (505), TRACE (405), a request for the internal error locations (404)
    (b"POST /v1/notifications HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 400,
     "invalid_request"),
    (b"GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n", 400, "invalid_request"),
    (b"TRACE / HTTP/1.1\r\nHost: t\r\n\r\n", 405, "method_not_allowed"),
    (b"GET /_pushgate/502 HTTP/1.1\r\nHost: t\r\n\r\n", 404, "not_found"),
    # the hubs' metrics (no authentication) are not served at the edge
    (b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", 404, "not_found"),
], ids=["cl-and-te", "two-content-lengths", "garbage", "header-line", "request-line", "body",
        "unknown-transfer-coding", "http-version", "trace", "internal-location", "metrics"])
async def test_nginx_refusals_have_the_json_error_body(
        edge: tuple[QuickNginx, ServerProcess], request_head: bytes, status: int, code: str) -> None:
    nginx, _ = edge
    got, headers, body, _ = await exchange(nginx.port, request_head, "127.0.0.25")
    assert got == status, body
    assert error_of(headers, body)["code"] == code


async def test_slow_heads_and_bodies_are_closed_after_the_timeouts(
        edge: tuple[QuickNginx, ServerProcess]) -> None:
    nginx, hub = edge
    key = hub.api_key
    half_head = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: "
    half_body = (b"POST /v1/notifications HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
                 + key.encode() + b"\r\nContent-Length: 100\r\n\r\n{")
    outcomes = await asyncio.gather(
        exchange(nginx.port, half_head, "127.0.0.26"),
        exchange(nginx.port, b"", "127.0.0.26"),
        exchange(nginx.port, half_body, "127.0.0.26"))
    for status, _, _, elapsed in outcomes:  # nginx closes without a reply (no 408)
        assert status is None
        assert HEADER_TIMEOUT - 0.05 <= elapsed < HEADER_TIMEOUT + 5


def test_launcher_clients_on_127_0_0_1_are_not_limited() -> None:
    """The launcher and the benchmarks drive nginx from 127.0.0.1: exempt, like a TLS
    terminator on the host would be."""
    conf = TEMPLATE.read_text()
    geo = conf[conf.index("geo $pushgate_unlimited {"):]
    geo = geo[:geo.index("}")]
    assert "127.0.0.1 1;" in " ".join(geo.split()) and "default 0;" in " ".join(geo.split())


async def test_a_dead_hub_is_a_json_502_not_nginx_html(
        cluster_binaries: None, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No hub listening (every try refused): the JSON body with ``retryable``, not
    nginx's HTML page (issue #19)."""
    base = tmp_path_factory.mktemp("dead")
    with refused_port() as port:
        nginx = QuickNginx(base / "nginx", [f"127.0.0.1:{port}"], access_log=False)
        nginx.start()
        try:
            await _expect_502(nginx)
        finally:
            nginx.stop()


async def test_a_hub_that_accepts_but_never_answers_is_a_json_504_after_the_read_timeout(
        cluster_binaries: None, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A stopped hub's kernel still accepts connections (SIGSTOP, a stall): nginx cannot
    tell, and a request it hands that hub is answered ``504 hub_timeout`` (JSON,
    retryable) after ``proxy_read_timeout`` — the file's values (60 s, 75 s for sends),
    shortened here to 2 and 3 s."""
    base = tmp_path_factory.mktemp("stalled")
    conf = TEMPLATE.read_text()
    assert conf.count("proxy_read_timeout 60s;") == 1
    assert conf.count("proxy_read_timeout 75s;") == 2  # sends: native and Pushca's alias
    template = base / "pushgate.conf"
    template.write_text(conf.replace("proxy_read_timeout 60s;", "proxy_read_timeout 2s;")
                        .replace("proxy_read_timeout 75s;", "proxy_read_timeout 3s;"))
    with socket.socket() as stalled:  # listening, never accepting: the kernel does it
        stalled.bind(("127.0.0.1", 0))
        stalled.listen(64)
        nginx = QuickNginx(base / "nginx", [f"127.0.0.1:{stalled.getsockname()[1]}"],
                           access_log=False, template=template)
        nginx.start()
        try:
            send = (b"POST /v1/notifications HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                    b"Content-Length: 2\r\n\r\n{}")
            upgrade = get("/v1/ws?token=t", b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Version: 13\r\n"
                          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
            pushca_ack = (b"POST /send-notification-with-acknowledge HTTP/1.1\r\nHost: t\r\n"
                          b"Connection: close\r\nContent-Length: 2\r\n\r\n{}")
            for request, wait in ((send, 3.0), (pushca_ack, 3.0), (upgrade, 2.0), (get(), 2.0)):
                status, headers, body, took = await exchange(nginx.port, request, "127.0.0.30",
                                                              timeout=20)
                assert status == 504, body
                error = error_of(headers, body)
                assert (error["code"], error["retryable"]) == ("hub_timeout", True)
                assert headers["retry-after"] == "1"
                assert wait - 0.5 < took < wait + 5, took
        finally:
            nginx.stop()


async def test_the_access_log_names_what_the_client_sent_never_the_token(
        cluster_binaries: None, tmp_path_factory: pytest.TempPathFactory) -> None:
    """nginx's own replies are internal redirects (``GET /_pushgate/502``): the log still
    names the client's method and path, without ``?token=`` (and Pushca's ``/{jwt}``)."""
    base = tmp_path_factory.mktemp("logged")
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2VjcmV0c2lnbmF0dXJl"
    with refused_port() as port:
        nginx = QuickNginx(base / "nginx", [f"127.0.0.1:{port}"])
        nginx.start()
        try:
            await _expect_502(nginx)
            upgrade = (b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13"
                       b"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
            for path in (f"/v1/ws?token={token}", f"/{token}", f"/{token}/"):
                status, _, _, _ = await exchange(nginx.port, get(path, upgrade), "127.0.0.28")
                assert status == 502
            log = base / "nginx" / "access.log"

            def lines() -> list[str] | None:
                got = log.read_text().splitlines() if log.exists() else []
                return got if len(got) >= 5 else None

            logged = await wait_for(lines, 10, "five access log lines")
        finally:
            nginx.stop()
    requests = [line.split('"')[1] for line in logged]
    assert requests == ["GET /healthz", "POST /v1/notifications", "GET /v1/ws", "GET /{jwt}",
                        "GET /{jwt}"]  # (a trailing slash too)
    assert all('" 502 ' in line for line in logged)
    assert not any("_pushgate" in line or "token" in line or token[:20] in line
                   for line in logged)


async def test_a_request_without_host_gets_a_url_of_the_edge_not_of_a_hub(
        edge: tuple[QuickNginx, ServerProcess]) -> None:
    nginx, hub = edge
    body = b'{"user":"nohost"}'
    request = (b"POST /v1/open-connection HTTP/1.0\r\nAuthorization: Bearer "
               + hub.api_key.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    status, _, reply, _ = await exchange(nginx.port, request, "127.0.0.29")
    assert status == 200, reply
    assert orjson.loads(reply)["url"].startswith(f"ws://127.0.0.1:{nginx.port}/v1/ws?token=")


async def _expect_502(nginx: QuickNginx) -> None:
    send = (b"POST /v1/notifications HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    for request in (get(), send):
        status, headers, body, _ = await exchange(nginx.port, request, "127.0.0.27")
        assert status == 502, body
        error = error_of(headers, body)
        assert error["code"] == "hub_unavailable" and error["retryable"] is True
        assert headers["retry-after"] == "1"


_H2C = (b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAEAAEAAAAIAAAABAAMAAABkAAQBAAAAAAUAAEAA\r\n")


async def test_an_h2c_upgrade_through_nginx_is_served_as_http_1_1_with_keep_alive(
        edge: tuple[QuickNginx, ServerProcess]) -> None:
    """Java's HttpClient asks every first request over http:// to upgrade to h2c: nginx
    forwards no upgrade but a websocket one, so the send is answered and the client's
    connection (and nginx's upstream one) serves the next sends; a websocket endpoint
    asked for h2c says 426."""
    from tests.support.rawhttp import read_reply

    nginx, hub = edge
    body = b'{"users": ["h2c-user"], "body": 1}'
    send = (b"POST /v1/notifications HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
            + hub.api_key.encode() + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n" % len(body))
    reader, writer = await asyncio.open_connection("127.0.0.1", nginx.port,
                                                   local_addr=("127.0.0.40", 0))
    try:
        writer.write(send + _H2C + b"\r\n" + body)
        seqs = []
        for i in range(4):
            status, headers, reply = await read_reply(reader)
            assert status == 200 and headers.get("connection") != "close", reply
            seqs.append(orjson.loads(reply)["results"][0]["seq"])
            if i < 3:
                writer.write(send + b"\r\n" + body)
        assert seqs == sorted(seqs) and len(set(seqs)) == 4
    finally:
        writer.close()
    status, headers, reply, _ = await exchange(
        nginx.port, get("/v1/ws", _H2C), "127.0.0.40")
    assert (status, headers.get("upgrade")) == (426, "websocket")
    assert error_of(headers, reply)["field"] == "Upgrade"


async def test_upgrades_with_a_body_through_nginx_get_their_json_refusal_and_no_502(
        edge: tuple[QuickNginx, ServerProcess]) -> None:
    """nginx sends them on pooled hub connections: each gets the hub's 405 (not nginx's
    502 for a hub that closed without a reply), and the hub stays in the rotation."""
    nginx, hub = edge
    body = b'{"users": ["late-upgrade"], "body": 1}'
    key = b"Authorization: Bearer " + hub.api_key.encode() + b"\r\n"
    upgrade = b"Connection: Upgrade\r\nUpgrade: websocket\r\n"

    def post(path: bytes, extra: bytes) -> bytes:
        return (b"POST " + path + b" HTTP/1.1\r\nHost: t\r\n" + key + extra
                + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    for _ in range(6):
        # a pooled upstream connection for the next one: the general pool, the sends' pool
        assert (await exchange(nginx.port, get(), "127.0.0.41"))[0] == 200
        status, headers, reply, _ = await exchange(nginx.port, post(b"/v1/ws", upgrade),
                                                   "127.0.0.41")
        assert (status, error_of(headers, reply)["code"]) == (405, "method_not_allowed")
        assert (await exchange(nginx.port, post(b"/v1/notifications", b""),
                               "127.0.0.41"))[0] == 200
        status, headers, reply, _ = await exchange(
            nginx.port, post(b"/v1/notifications", upgrade), "127.0.0.41")
        assert (status, error_of(headers, reply)["code"]) == (404, "not_found"), reply
    status, _, _, _ = await exchange(nginx.port, get(), "127.0.0.41")
    assert status == 200
