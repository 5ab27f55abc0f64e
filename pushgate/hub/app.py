"""``create_app``: the hub's Starlette application.

Embedded mode = this hub + the routing core in-process (:class:`RoutingBackend`: store,
committer, cleaner, memory directory, offline bridge) on SQLite. Cluster mode (``routers``
set) = this hub + :class:`RouterLinks` to the routers, nothing durable here.
:class:`Gateway` owns every component and their lifecycle:

start:    backend (migrate → store → committer → cleaner → outbox → push worker) or
          router links → sweeper → ready
shutdown: not ready → refuse new sessions → close sessions with SHUTDOWN (4000) after
          their queued frames → wait up to ``shutdown_grace_s`` → router links (their
          last announcements leave first) or backend close (flush the committer, finish
          pushes in flight, stop the cleaner, close the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from pushgate.auth import ApiKeys, Identity, TokenCodec
from pushgate.errors import (
    CloseCode,
    Forbidden,
    InvalidRequest,
    NotConfigured,
    PushgateError,
)
from pushgate.hub import api
from pushgate.hub.link import RemoteRouter, RouterLinks
from pushgate.hub.openapi import openapi_endpoint
from pushgate.hub.registry import Registry
from pushgate.hub.ws import websocket_endpoint
from pushgate.logs import get_logger
from pushgate.metrics import GatewayMetrics
from pushgate.router.backend import RoutingBackend
from pushgate.router.core import Router, SendResult
from pushgate.router.requests import Limits, parse_send
from pushgate.router.routing import Filter
from pushgate.settings import Settings

log = get_logger("pushgate.hub")


class LocalLink:
    """HubLink to the hub in this process (embedded mode)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def deliver(self, hub: str, session_ids: Sequence[str], frame: str, seq: int, t0: float,
                want_ack: bool = False) -> int:
        return self.registry.deliver(session_ids, frame, seq, t0) if hub == self.registry.hub_id else 0

    def kick(self, hub: str, session_id: str, by: str | None) -> None:
        if hub == self.registry.hub_id:
            self.registry.kick(session_id, by)

    async def broadcast(self, flt: Filter, frame: str, counter: int, t0: float) -> int:
        return self.registry.broadcast(flt, frame, counter, t0)


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub_id = f"hub-{uuid.uuid4().hex[:12]}"
        self.metrics = GatewayMetrics()
        self.tokens = TokenCodec(
            algorithms=settings.jwt_algorithms, secret=settings.jwt_secret,
            public_key=settings.jwt_public_key, private_key=settings.jwt_private_key,
            audience=settings.jwt_audience, issuer=settings.jwt_issuer)
        self.api_keys = ApiKeys(settings.api_keys)
        self.registry = Registry(self.hub_id)
        self.cluster = bool(settings.routers)
        self.router: Router | RemoteRouter
        self.backend: RoutingBackend | None = None
        self.links: RouterLinks | None = None
        if self.cluster:  # cluster hub: sessions only; the routers own store and directory
            self.links = RouterLinks(settings.routers, self.registry,
                                     settings.api_keys[0] if settings.api_keys else None,
                                     settings.hub_heartbeat_ttl_s)
            self.router = RemoteRouter(self.links, settings.inline_event_max_bytes)
        else:
            self.backend = RoutingBackend(settings, LocalLink(self.registry), self.metrics)
            self.router = self.backend.router
        self.send_limits = Limits(settings.max_body_bytes, settings.max_users_per_send,
                                  settings.event_ttl_s, settings.max_event_ttl_s,
                                  settings.ack_timeout_ms)
        self.limits = {
            "max_frame_bytes": settings.max_frame_bytes,
            "inline_event_max_bytes": settings.inline_event_max_bytes,
            "fetch_max_limit": settings.fetch_max_limit,
            "fetch_max_bytes": settings.fetch_max_bytes,
            "max_body_bytes": settings.max_body_bytes,
            "idle_timeout_s": settings.idle_timeout_s,
            "ping_interval_s": settings.ping_interval_s,
            "max_sessions_per_user": settings.max_sessions_per_user,
        }
        self.started = False
        self.shutting_down = False
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Taking sessions and sends (in the cluster: linked to at least one router)."""
        return self.started and not self.shutting_down and (
            self.links is None or self.links.any_up.is_set())

    async def start(self) -> None:
        if self.links is not None:
            self.links.start()
        if self.backend is not None:
            await self.backend.start()
        self._sweeper = asyncio.create_task(self._sweep())
        self.started = True
        if self.backend is not None:
            log.info("gateway started", hub=self.hub_id, store=_redact(self.backend.store_url))
        else:
            log.info("gateway started (cluster hub)", hub=self.hub_id,
                     routers=self.settings.routers)

    async def begin_shutdown(self) -> None:
        """Stop taking sessions and close the live ones with SHUTDOWN (reconnect)."""
        if self.shutting_down:
            return
        self.shutting_down = True
        sessions = list(self.registry)
        for s in sessions:
            s.close(CloseCode.SHUTDOWN, "server shutting down; reconnect")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.registry.empty.wait(), self.settings.shutdown_grace_s)
        log.info("sessions closed", closed=len(sessions), left=len(self.registry))

    async def stop(self) -> None:
        await self.begin_shutdown()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self.links is not None:
            await self.links.close()
        if self.backend is not None:
            await self.backend.close()
        log.info("gateway stopped", hub=self.hub_id)

    async def _sweep(self) -> None:
        """Close sessions that went idle or whose token expired (one task for all)."""
        period = min(5.0, self.settings.idle_timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            now_mono, now = time.monotonic(), time.time()
            idle_before = now_mono - self.settings.idle_timeout_s
            for s in self.registry:
                if s.expires_at <= now:
                    s.close(CloseCode.TOKEN_EXPIRED, "token expired; reconnect with a fresh token")
                elif s.last_rx < idle_before:
                    s.close(CloseCode.IDLE, f"no frame for {self.settings.idle_timeout_s:g} s")

    # -- operations the endpoints share ------------------------------------------------------

    def open_connection(self, request: Request, identity: Identity) -> dict[str, Any]:
        if not self.tokens.can_mint:
            raise NotConfigured("open-connection needs a signing key: set jwt_secret or "
                                "jwt_private_key", field="jwt_private_key")
        raw, token = self.tokens.mint(identity, self.settings.token_ttl_s)
        if self.settings.public_url:
            base = self.settings.public_url.rstrip("/")
        else:
            scheme = "wss" if request.url.scheme in ("https", "wss") else "ws"
            base = f"{scheme}://{request.url.netloc}"
        return {"url": f"{base}/v1/ws?token={raw}", "token": raw, "expires_at": token.expires_at}

    async def client_send(self, sender: Identity, body: dict[str, Any]) -> SendResult:
        """A send from a client's websocket: the body is wrapped with the sender's identity
        (so recipients know who sent it) and filters stay inside the sender's workspace."""
        if not self.settings.allow_client_send:
            raise Forbidden("client sends are disabled on this server", field="type")
        if "body" not in body:
            raise InvalidRequest("'body' is required", field="body")
        flt = body.get("filter")
        if isinstance(flt, dict):
            ws = flt.get("workspace")
            if ws is not None and ws != sender.workspace:
                raise InvalidRequest("a client may only send inside its own workspace",
                                     field="filter.workspace")
            body = {**body, "filter": {**flt, "workspace": sender.workspace}}
        wrapped = {**body, "body": {"from": {"user": sender.user, "workspace": sender.workspace,
                                             "device": sender.device,
                                             "application": sender.application},
                                    "body": body["body"]}}
        return await self.router.send(parse_send(wrapped, self.send_limits))


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


async def _pushgate_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PushgateError)
    request.app.state.gateway.metrics.error(exc.code)
    return api.error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return api.json_response({"error": {"code": code, "message": str(exc.detail),
                                        "retryable": False}}, exc.status_code)


def create_app(settings: Settings) -> Starlette:
    """The embedded gateway as an ASGI app (run it with uvicorn; see pushgate.server)."""
    gateway = Gateway(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    routes = [
        WebSocketRoute("/v1/ws", websocket_endpoint),
        Route("/v1/open-connection", api.open_connection, methods=["POST"]),
        Route("/v1/notifications", api.send_notification, methods=["POST"]),
        Route("/v1/users/{user}/events", api.user_events, methods=["GET"]),
        Route("/v1/users/{user}/read", api.user_read, methods=["POST"]),
        Route("/v1/users/{user}/read-state", api.user_read_state, methods=["GET"]),
        Route("/v1/users/{user}/sessions", api.user_sessions, methods=["GET"]),
        Route("/v1/users/{user}/devices", api.user_devices, methods=["GET", "PUT", "DELETE"]),
        Route("/v1/devices", api.client_devices, methods=["POST", "DELETE"]),
        Route("/open-connection", api.pushca_open_connection, methods=["POST"]),
        Route("/send-notification", api.pushca_send, methods=["POST"]),
        Route("/send-notification-with-acknowledge", api.pushca_send_ack, methods=["POST"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/readyz", api.readyz, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan,
        exception_handlers={PushgateError: _pushgate_error, HTTPException: _http_error})
    app.state.gateway = gateway
    return app
