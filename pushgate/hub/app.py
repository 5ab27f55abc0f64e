"""``create_app``: the hub's Starlette application (routes, error handlers, lifespan).

The :class:`~pushgate.hub.node.HubNode` it serves is ``app.state.node``; the endpoints
are in :mod:`pushgate.hub.api` (HTTP); websockets never reach this app: the server
hands upgrades to :mod:`pushgate.hub.connection`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, request_response

from pushgate.errors import InvalidRequest, PushgateError, StartupError
from pushgate.hub import api
from pushgate.hub.admin import Admin
from pushgate.hub.node import HubNode
from pushgate.hub.openapi import openapi_endpoint
from pushgate.hub.responses import error_response, json_response, unexpected_error
from pushgate.pushca_protocol import connection_token
from pushgate.settings import Settings


async def _pushgate_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PushgateError)
    request.app.state.node.metrics.error(exc.code)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404 and request.method == "GET" and \
            connection_token(request.url.path) is not None:
        # a Pushca connection string opened without the upgrade: what /v1/ws says
        return await api.websocket_over_http(request)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    request.app.state.node.metrics.error(code)
    response = json_response({"error": {"code": code, "message": str(exc.detail),
                                            "retryable": False}}, exc.status_code)
    if exc.headers:  # 405: Allow (RFC 9110 15.5.6)
        response.headers.update(exc.headers)
        if "allow" in response.headers:  # Starlette joins a set: the same order every time
            response.headers["allow"] = ", ".join(sorted(response.headers["allow"].split(", ")))
    return response


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client closed (or the guard ended a body that came too slowly, with its 408)
    while its body was read: nobody to answer, nothing to log."""
    return Response(status_code=400)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    """Starlette's ``ServerErrorMiddleware`` sends this, then re-raises ``exc``: uvicorn
    logs it and closes the connection."""
    request.app.state.node.metrics.error("internal")
    return unexpected_error()


#: the request header to blame for each of Starlette's preflight refusals
_PREFLIGHT_FIELDS = {"origin": "Origin", "method": "Access-Control-Request-Method",
                     "headers": "Access-Control-Request-Headers",
                     "private-network": "Access-Control-Request-Private-Network"}


class _JsonCORS(CORSMiddleware):
    """Starlette's CORS, its refused preflight (a plain-text 400) in the documented error
    body: ``400 invalid_request`` naming the header to blame, with the same headers."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        message = bytes(response.body).decode()
        failure = message.removeprefix("Disallowed CORS ").split(", ")[0]
        error = error_response(InvalidRequest(message, field=_PREFLIGHT_FIELDS.get(failure)))
        for name, value in response.headers.items():
            if name not in ("content-type", "content-length"):
                error.headers[name] = value
        return error


def _pushca_open_connection(settings: Settings) -> Route:
    """Pushca's ``/open-connection``; in the keyless mode browsers call it from their
    pages, so it answers CORS (preflight included) for ``allowed_origins``."""
    if not settings.pushca_public_open_connection:
        return Route("/open-connection", api.pushca_open_connection, methods=["POST"])
    cors = _JsonCORS(request_response(api.pushca_open_connection),
                     allow_origins=settings.allowed_origins, allow_methods=["POST"],
                     allow_headers=["Content-Type", "Authorization"], max_age=600)
    return Route("/open-connection", cors, methods=["POST", "OPTIONS"])


def create_app(settings: Settings) -> Starlette:
    """The hub as an ASGI app (run it with uvicorn; see pushgate.server)."""
    node = HubNode(settings)
    admin = Admin(node, settings.admin_key) if settings.admin_key else None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await node.start()
        except StartupError as e:  # worded by the CLI, without a traceback
            node.startup_error = e
            raise
        try:
            yield
        finally:
            if admin is not None:
                await admin.close()
            await node.stop()

    routes: list[BaseRoute] = [
        Route("/v1/open-connection", api.open_connection, methods=["POST"]),
        # one route for both methods: a 405 says "allow: GET, HEAD, POST"
        Route("/v1/notifications", api.notifications, methods=["GET", "POST"]),
        # (ids may hold "/", sent as %2F: pushgate.hub.pathids)
        Route("/v1/notifications/{report:path}/users/{user:path}", api.get_report_user,
              methods=["GET"]),
        Route("/v1/notifications/{report:path}", api.get_report, methods=["GET"]),
        Route("/v1/users/{user:path}/events", api.user_events, methods=["GET"]),
        Route("/v1/users/{user:path}/read", api.user_read, methods=["POST"]),
        Route("/v1/users/{user:path}/read-state", api.user_read_state, methods=["GET"]),
        Route("/v1/users/{user:path}/sessions", api.user_sessions, methods=["GET"]),
        Route("/v1/users/{user:path}/devices", api.user_devices, methods=["GET", "PUT", "DELETE"]),
        Route("/v1/devices", api.client_devices, methods=["POST", "DELETE"]),
        _pushca_open_connection(settings),
        Route("/send-notification", api.pushca_send, methods=["POST"]),
        Route("/send-notification-with-acknowledge", api.pushca_send_ack, methods=["POST"]),
        Route("/v1/ws", api.websocket_over_http, methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/readyz", api.readyz, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
    ]
    if admin is not None:  # no admin_key: /admin is 404 like any unknown path
        routes += admin.routes()
    app = Starlette(
        routes=routes, lifespan=lifespan,
        exception_handlers={PushgateError: _pushgate_error, HTTPException: _http_error,
                            ClientDisconnect: _client_gone, Exception: _unexpected_error})
    app.router.redirect_slashes = False  # "/healthz/" is an unknown path (404), no redirect
    app.state.node = node
    return app
