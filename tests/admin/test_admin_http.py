"""/admin over plain HTTP against a real ``pushgate serve``: off without admin_key, the
login and its cookie, the API behind it, the event stream and shutdown."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest

from pushgate.hub.admin import COOKIE, AdminAuth
from pushgate.settings import SettingsError, load_settings
from tests.admin.conftest import ADMIN_KEY, login
from tests.support.admin import sse_events
from tests.support.server import ServerProcess, running_server


def _client(srv: ServerProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=srv.base_url, timeout=10)


async def test_no_admin_key_no_dashboard(tmp_path: Path) -> None:
    with running_server(tmp_path) as srv:
        async with _client(srv) as http:
            for method, path in (("GET", "/admin"), ("POST", "/admin/login"),
                                 ("GET", "/admin/api/stream"),
                                 ("GET", "/admin/static/admin.js")):
                r = await http.request(method, path, data={"key": "x" * 20})
                assert r.status_code == 404, (path, r.text)
                assert r.json()["error"]["code"] == "not_found"
                assert "set-cookie" not in r.headers


def test_admin_key_too_short_is_refused() -> None:
    with pytest.raises(SettingsError, match="admin_key: Value error, must be at least 16"):
        load_settings(admin_key="short")
    with pytest.raises(SettingsError, match="admin_key must differ from every API key"):
        load_settings(admin_key="k" * 20, api_keys=["other-key", "k" * 20])


async def test_login_cookie_and_api(admin_server: ServerProcess) -> None:
    async with _client(admin_server) as http:
        page = await http.get("/admin")
        assert page.status_code == 200 and 'name="key"' in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]

        wrong = await login(http, "wrong-key-wrong-key")
        assert wrong.status_code == 401 and "Wrong admin key." in wrong.text
        assert "set-cookie" not in wrong.headers
        r = await http.get("/admin/api/users/alice")
        assert r.status_code == 401
        assert r.json()["error"] == {
            "code": "unauthorized", "field": "cookie", "retryable": False,
            "message": "log in to the admin dashboard first (POST /admin/login)"}

        ok = await login(http)
        assert ok.status_code == 303 and ok.headers["location"] == "/admin"
        cookie = ok.headers["set-cookie"]
        attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
        assert {"httponly", "path", "max-age"} <= attrs and "secure" not in attrs
        assert "SameSite=strict" in cookie and "Path=/admin" in cookie
        assert "Max-Age=3600" in cookie and ADMIN_KEY not in cookie

        dash = await http.get("/admin")
        assert 'id="nodes"' in dash.text and ADMIN_KEY not in dash.text
        r = await http.get("/admin/api/users/alice")
        assert r.status_code == 200
        assert r.json() == {"user": "alice", "sessions": [], "read_state": None, "devices": []}
        r = await http.get("/admin/api/users/" + "x" * 300)
        assert r.status_code == 400 and r.json()["error"]["field"] == "user"

        # a forged or altered cookie is refused
        value = http.cookies[COOKIE]
        sid, expires, mac = value.split(".")
        for forged in (f"{sid}.{int(expires) + 3600}.{mac}", f"{sid}x.{expires}.{mac}", "x"):
            r = await http.get("/admin/api/users/alice", headers={"Cookie": f"{COOKIE}={forged}"})
            assert r.status_code == 401

        # a logout (or login) form another site posts is refused: the session lives on
        for path, data in (("/admin/logout", None), ("/admin/login", {"key": ADMIN_KEY})):
            for site in ("cross-site", "same-site"):
                r = await http.post(path, data=data, headers={"Sec-Fetch-Site": site})
                assert r.status_code == 403, r.text
                assert r.json()["error"]["field"] == "Sec-Fetch-Site"
                assert "set-cookie" not in r.headers
        assert (await http.get("/admin/api/users/alice")).status_code == 200

        # logout: the cookie is cleared and the old value no longer works
        out = await http.post("/admin/logout", headers={"Sec-Fetch-Site": "same-origin"})
        assert out.status_code == 303 and f'{COOKIE}=""' in out.headers["set-cookie"]
        assert COOKIE not in http.cookies
        r = await http.get("/admin/api/users/alice", headers={"Cookie": f"{COOKIE}={value}"})
        assert r.status_code == 401


async def test_login_attempts_are_rationed_per_address(admin_server: ServerProcess) -> None:
    """Guessing in parallel gains nothing: after a burst of 10 attempts an address gets
    429 with Retry-After, without the key being looked at (the right key included)."""
    async with admin_server.http() as http:
        wrong = await asyncio.gather(*(login(http, "wrong-key-wrong-key") for _ in range(10)))
        assert [r.status_code for r in wrong] == [401] * 10
        limited = await login(http, "wrong-key-wrong-key")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert "Too many attempts" in limited.text
        right = await login(http)
        assert right.status_code == 429 and "pushgate_admin" not in right.cookies


async def test_secure_cookie_behind_https_proxy(tmp_path: Path) -> None:
    with running_server(tmp_path, PUSHGATE_ADMIN_KEY=ADMIN_KEY,
                        PUSHGATE_TRUSTED_PROXIES="127.0.0.1") as srv:
        async with _client(srv) as http:
            r = await http.post("/admin/login", data={"key": ADMIN_KEY},
                                headers={"X-Forwarded-Proto": "https"})
            assert r.status_code == 303
            assert "; Secure" in r.headers["set-cookie"] or "; secure" in r.headers["set-cookie"]


def test_cookie_expires_and_key_change_logs_out() -> None:
    auth = AdminAuth(ADMIN_KEY, ttl_s=60)
    now = time.time()
    cookie = auth.issue(now)
    assert auth.session(cookie, now + 59) is not None
    assert auth.session(cookie, now + 61) is None
    assert AdminAuth(ADMIN_KEY + "2", ttl_s=60).session(cookie, now) is None
    assert AdminAuth(ADMIN_KEY, ttl_s=60).session(cookie, now) is not None  # another hub


@pytest.mark.parametrize("cookie", ["a.\u00b2.b", "a." + "9" * 5000 + ".b", "a.1.\u00e9"])
def test_malformed_cookie_is_no_session(cookie: str) -> None:
    """Garbage in the cookie is "not logged in" (401), never an exception (500)."""
    assert AdminAuth(ADMIN_KEY, ttl_s=60).session(cookie) is None


async def test_a_logout_ends_the_open_stream_and_head_gets_headers_only(
        admin_server: ServerProcess) -> None:
    """The stream checks its login at every sample: a logout (or the login's expiry)
    ends it, the page's reconnect then gets 401. A HEAD gets the headers and ends (it
    never subscribed: a HEAD stream used to stay open and keep the hub sampling). The
    pages are served by their routes only (login, security headers), not as static
    files."""
    srv = admin_server
    async with _client(srv) as http:
        await login(http)
        r = await asyncio.wait_for(http.head("/admin/api/stream"), 10)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/event-stream")
        for page in ("dashboard.html", "login.html"):
            assert (await http.get(f"/admin/static/{page}")).status_code == 404
        assert (await http.get("/admin/static/admin.js")).status_code == 200
        async with http.stream("GET", "/admin/api/stream") as stream:
            lines = stream.aiter_lines()
            first = await asyncio.wait_for(sse_events(lines, 2), 20)
            assert [name for name, _ in first] == ["history", "sample"]
            assert first[1][1]["point"]["t"] > max(
                [p["t"] for p in first[0][1]["points"]], default=0)  # no point twice
            async with _client(srv) as other:
                other.cookies.update(http.cookies)
                assert (await other.post("/admin/logout")).status_code == 303
            with pytest.raises(AssertionError, match="the stream ended"):
                await asyncio.wait_for(sse_events(lines, 1000), 10)
        assert (await http.get("/admin/api/stream")).status_code == 401


async def test_event_stream_and_shutdown(admin_server: ServerProcess) -> None:
    srv = admin_server
    async with _client(srv) as http:
        r = await http.get("/admin/api/stream")
        assert r.status_code == 401
        await login(http)
        async with http.stream("GET", "/admin/api/stream") as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = r.aiter_lines()
            events = await asyncio.wait_for(sse_events(lines, 2), 20)
            assert events[0][0] == "history" and isinstance(events[0][1]["points"], list)
            name, sample = events[1]
            assert name == "sample"
            [node] = sample["nodes"]
            assert node["kind"] == "gateway" and node["health"] == "ok"
            assert sample["sessions"] == {node["id"]: 0}
            assert set(sample["point"]) >= {"t", "sends", "deliveries", "acks", "pushes",
                                            "push_failures", "push_queue", "p50_ms",
                                            "p99_ms", "sessions"}
            # SIGTERM while a dashboard watches: the stream ends, the process exits at once
            started = time.monotonic()
            stop = asyncio.create_task(asyncio.to_thread(srv.stop, signal.SIGTERM))
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, AssertionError)):
                await asyncio.wait_for(sse_events(lines, 1000), 20)
            assert await stop in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
            assert time.monotonic() - started < 5  # not the 5 s shutdown grace
