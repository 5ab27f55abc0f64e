"""The hub's central object, :class:`HubNode`: one per hub process.

Embedded mode = this hub + the routing core in-process (:class:`RoutingBackend`: store,
committer, cleaner, memory directory, offline bridge) on SQLite. Cluster mode
(``routers`` set) = this hub + :class:`~pushgate.hub.routers.Routers` (a HubLink stream
to each router) behind :class:`~pushgate.hub.remote.RemoteRouter`, nothing durable here.
Either way the endpoints call ``node.router``, a
:class:`~pushgate.router.base.RoutingCore`.

start:    backend (migrate → store → committer → cleaner → outbox → push worker) or
          router streams → sweeper → ready
shutdown: not ready → refuse new sessions → close sessions with SHUTDOWN (4000) after
          their queued frames → wait up to ``shutdown_grace_s`` → router streams (their
          last announcements leave first) or backend close (flush the committer, finish
          pushes in flight, stop the cleaner, close the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

from starlette.requests import Request

from pushgate.auth import ApiKeys, Identity, TokenCodec
from pushgate.errors import CloseCode, Forbidden, InvalidRequest, NotConfigured
from pushgate.hub.guard import ConnectionLimits
from pushgate.hub.registry import LocalHubs, Registry
from pushgate.hub.remote import RemoteRouter
from pushgate.hub.routers import Routers
from pushgate.logs import get_logger
from pushgate.metrics import GatewayMetrics
from pushgate.router.backend import RoutingBackend
from pushgate.router.base import RoutingCore, SendResult
from pushgate.router.requests import Limits, parse_send
from pushgate.settings import Settings

log = get_logger("pushgate.hub")


class HubNode:
    """One hub process: its sessions, its routing core (in-process or remote) and their
    lifecycle (see the module docstring for the order)."""

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
        self.router: RoutingCore
        self.backend: RoutingBackend | None = None
        self.routers: Routers | None = None
        if self.cluster:  # cluster hub: sessions only; the routers own store and directory
            self.routers = Routers(settings.routers, self.registry,
                                   settings.api_keys[0] if settings.api_keys else None,
                                   settings.hub_heartbeat_ttl_s)
            self.router = RemoteRouter(self.routers)
        else:
            self.backend = RoutingBackend(settings, LocalHubs(self.registry), self.metrics)
            self.router = self.backend.router
        self.send_limits = Limits.of(settings)
        self.conn_limits = ConnectionLimits.of(settings)  # per client IP, hub.guard
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
            self.routers is None or self.routers.any_up.is_set())

    async def start(self) -> None:
        if self.routers is not None:
            self.routers.start()
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
        if self.routers is not None:
            await self.routers.close()
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
