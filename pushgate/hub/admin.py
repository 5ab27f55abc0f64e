"""The live admin dashboard at ``/admin`` (only when ``admin_key`` is set; else 404).

Login: ``POST /admin/login`` with the form field ``key`` = ``admin_key`` (compared in
constant time). The answer sets the cookie ``pushgate_admin`` — HttpOnly,
SameSite=Strict, Path=/admin, Secure when the request came over HTTPS, Max-Age
``admin_session_ttl_s`` — holding a random session id, its expiry and an HMAC of both
under a key derived from ``admin_key``: any hub of a cluster accepts it (no shared
session store), changing ``admin_key`` logs everybody out, and a logout revokes the id
on the hub that served it (and clears the cookie). Both forms refuse a post another
site makes (403, by the browser's ``Sec-Fetch-Site``). The page holds no secret; every
``/admin/api/*`` call checks the cookie (401 ``unauthorized`` without it).

- ``GET /admin``: the dashboard (or the login form); ``/admin/static/*`` its assets
  (packaged, no CDN: works offline).
- ``GET /admin/api/stream``: server-sent events, one ``sample`` a second (nodes,
  sessions per hub, rates, latency; see :mod:`pushgate.hub.adminstats`), after one
  ``history`` event with the last minutes' chart points.
- ``GET /admin/api/users/{user}``: the user's live sessions, read state and devices.
- ``GET /admin/api/reports?limit=``, ``GET /admin/api/reports/{report}``: the latest
  sends' delivery reports, one report (as ``GET /v1/notifications...``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import secrets
import time
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from pushgate.errors import Forbidden, NotFound, Unauthorized
from pushgate.hub import bodies
from pushgate.hub.adminstats import Sampler
from pushgate.hub.api import query_int
from pushgate.hub.node import HubNode
from pushgate.hub.pathids import path_id
from pushgate.hub.responses import (
    device_payload,
    json_response,
    read_state_payload,
    report_payload,
)
from pushgate.ratelimit import Buckets

COOKIE = "pushgate_admin"
STATIC = Path(str(resources.files("pushgate.hub") / "static" / "admin"))
# the pages: served by the routes below only (login state, security headers), never as
# static files
PAGES = Path(str(resources.files("pushgate.hub") / "templates" / "admin"))
LOGIN_MAX_BYTES = 4096
#: login attempts per client address: a burst of LOGIN_BURST, then one every
#: 60 / LOGIN_PER_MINUTE s (429 beyond, the right key included): guesses in parallel
#: gain nothing over guesses in a row
LOGIN_BURST = 10
LOGIN_PER_MINUTE = 10
LATEST_SENDS_MAX = 100


class AdminAuth:
    """Signed admin session cookies (see the module docstring)."""

    def __init__(self, admin_key: str, ttl_s: int) -> None:
        self._admin_key = admin_key.encode()
        self._mac_key = hashlib.sha256(b"pushgate admin cookie\0" + self._admin_key).digest()
        self.ttl_s = ttl_s
        self._revoked: dict[str, float] = {}  # session id -> its expiry

    def key_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._admin_key)

    def _mac(self, sid: str, expires: int) -> str:
        return hmac.new(self._mac_key, f"{sid}.{expires}".encode(), hashlib.sha256).hexdigest()

    def issue(self, now: float | None = None) -> str:
        expires = int((now or time.time()) + self.ttl_s)
        sid = secrets.token_urlsafe(18)
        return f"{sid}.{expires}.{self._mac(sid, expires)}"

    def session(self, cookie: str | None, now: float | None = None) -> str | None:
        """The session id of a valid, unexpired, unrevoked cookie; else None."""
        if not cookie or cookie.count(".") != 2:
            return None
        sid, expires_s, mac = cookie.split(".")
        # ASCII digits only, and few of them: str.isdigit() also accepts "\u00b2", and
        # int() refuses 4300+ digits; a non-ASCII mac made compare_digest raise (each was a 500)
        if not (expires_s.isascii() and expires_s.isdigit() and len(expires_s) <= 12):
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(sid, int(expires_s)).encode()):
            return None
        if int(expires_s) < (now or time.time()) or sid in self._revoked:
            return None
        return sid

    def revoke(self, cookie: str | None) -> None:
        sid = self.session(cookie)
        if sid is not None:
            now = time.time()
            self._revoked = {s: e for s, e in self._revoked.items() if e > now}
            self._revoked[sid] = int(cookie.split(".")[1])  # type: ignore[union-attr]


class Admin:
    """The dashboard's endpoints for one hub."""

    def __init__(self, node: HubNode, admin_key: str) -> None:
        self.node = node
        self.auth = AdminAuth(admin_key, node.settings.admin_session_ttl_s)
        self.sampler = Sampler(node)
        self.attempts = Buckets(LOGIN_PER_MINUTE / 60, LOGIN_BURST)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/admin", self.page, methods=["GET"]),
            Route("/admin/", self.page, methods=["GET"]),
            Route("/admin/login", self.login, methods=["POST"]),
            Route("/admin/logout", self.logout, methods=["POST"]),
            Route("/admin/api/stream", self.stream, methods=["GET"]),
            Route("/admin/api/users/{user:path}", self.user, methods=["GET"]),
            Route("/admin/api/reports", self.reports, methods=["GET"]),
            Route("/admin/api/reports/{report:path}", self.report, methods=["GET"]),
            Mount("/admin/static", StaticFiles(directory=STATIC), name="admin-static"),
        ]

    def _check(self, request: Request) -> None:
        if self.auth.session(request.cookies.get(COOKIE)) is None:
            raise Unauthorized("log in to the admin dashboard first (POST /admin/login)",
                               field="cookie")

    # -- pages -------------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        logged_in = self.auth.session(request.cookies.get(COOKIE)) is not None
        return _html("dashboard.html" if logged_in else "login.html")

    async def login(self, request: Request) -> Response:
        _same_origin_form(request)
        ip = request.client.host if request.client is not None else ""
        wait = self.attempts.take(ip, time.monotonic()) if ip else 0.0
        if wait > 0:  # refused before the key is looked at
            self.node.metrics.error("rate_limited")
            retry = max(1, math.ceil(wait))
            response = _html("login.html", 429, error=f"Too many attempts from this address; "
                             f"try again in {retry} s.")
            response.headers["Retry-After"] = str(retry)
            return response
        bodies.check_length(request.headers.get("content-length"), LOGIN_MAX_BYTES)
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > LOGIN_MAX_BYTES:
                raise bodies.too_large(LOGIN_MAX_BYTES)
        given = parse_qs(raw.decode("utf-8", "replace")).get("key", [""])[0]
        if not self.auth.key_ok(given):
            self.node.metrics.error("unauthorized")
            await asyncio.sleep(0.5)  # a guess costs the guesser time
            return _html("login.html", 401, error="Wrong admin key.")
        response = RedirectResponse("/admin", status_code=303)
        response.set_cookie(COOKIE, self.auth.issue(), max_age=self.auth.ttl_s, path="/admin",
                            secure=request.url.scheme == "https", httponly=True,
                            samesite="strict")
        return response

    async def logout(self, request: Request) -> Response:
        _same_origin_form(request)
        self.auth.revoke(request.cookies.get(COOKIE))
        response = RedirectResponse("/admin", status_code=303)
        response.delete_cookie(COOKIE, path="/admin", secure=request.url.scheme == "https",
                               httponly=True, samesite="strict")
        return response

    # -- data --------------------------------------------------------------------------------

    async def stream(self, request: Request) -> Response:
        self._check(request)
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        if request.method == "HEAD":  # no body: never subscribe (a HEAD stream never ends)
            return Response(headers=headers, media_type="text/event-stream")
        sampler, node, auth = self.sampler, self.node, self.auth
        cookie = request.cookies.get(COOKIE)
        queue = sampler.subscribe()

        async def events() -> AsyncIterator[bytes]:
            try:
                history = list(sampler.history)
                shown = history[-1]["t"] if history else 0.0
                yield _event("history", {"points": history})
                while not node.shutting_down:
                    try:
                        sample = await asyncio.wait_for(queue.get(), 15.0)
                    except TimeoutError:
                        sample = None
                    if auth.session(cookie) is None:  # expired or logged out: the page's
                        break                         # reconnect gets 401 -> login form
                    if sample is None:
                        yield b": keep-alive\n\n"
                    elif sample["t"] > shown:  # (the history may end with this sample)
                        yield _event("sample", sample)
            finally:
                sampler.unsubscribe(queue)

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    async def user(self, request: Request) -> Response:
        self._check(request)
        user = path_id(request, "user", 4, 5)
        router = self.node.router
        sessions, devices = await asyncio.gather(router.sessions(user), router.devices(user))
        try:
            read_state: dict[str, Any] | None = read_state_payload(await router.read_state(user))
        except NotFound:  # no inbox yet (nothing was ever sent to the user)
            read_state = None
        return json_response({
            "user": user,
            "sessions": [{"session": s.session_id, "hub": s.hub, "connected_at": s.connected_at,
                          "workspace": s.workspace, "device": s.device,
                          "application": s.application} for s in sessions],
            "read_state": read_state,
            "devices": [device_payload(d) for d in devices]})

    async def reports(self, request: Request) -> Response:
        self._check(request)
        limit = query_int(request.query_params.get("limit"), "limit", 20, 1, LATEST_SENDS_MAX)
        found = await self.node.router.latest_reports(limit)
        return json_response({"reports": [report_payload(r) for r in found]})

    async def report(self, request: Request) -> Response:
        self._check(request)
        report = path_id(request, "report", 4, 5)
        return json_response(report_payload(await self.node.router.report(report)))

    async def close(self) -> None:
        await self.sampler.close()


def _same_origin_form(request: Request) -> None:
    """Login and logout come from the dashboard's own forms: a form another site posts
    (a browser says so in ``Sec-Fetch-Site``) is refused, so that no page can log an
    operator out, or into a session of its own. Clients that send no such header
    (curl, scripts) are not affected."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden(f"a {site} request to {request.url.path} is refused: use the "
                        "dashboard's own form", field="Sec-Fetch-Site")


def _event(name: str, data: object) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _html(name: str, status: int = 200, error: str = "") -> Response:
    text = (PAGES / name).read_text()
    text = text.replace("<!--error-->", f'<p class="error" role="alert">{error}</p>' if error
                        else "")
    return HTMLResponse(text, status, headers={
        "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                   "frame-ancestors 'none'",
        "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"})

