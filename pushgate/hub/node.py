"""The hub's central object, :class:`HubNode`: one per hub process.

Embedded mode = this hub + the routing core in-process (:class:`RoutingBackend`: store,
committer, cleaner, memory directory, offline bridge) on SQLite. Cluster mode
(``routers`` set) = this hub + :class:`~pushgate.hub.routers.Routers` (a HubLink stream
to each router) behind :class:`~pushgate.hub.remote.RemoteRouter`, nothing durable here.
Either way the endpoints call ``node.router``, a
:class:`~pushgate.router.base.RoutingCore`.

start:    backend (migrate → store → committer → cleaner → outbox → push worker) or
          router streams → timer wheel → ready
shutdown: not ready → refuse new sessions → close sessions with SHUTDOWN (4000) after
          their queued frames → wait up to ``shutdown_grace_s`` for their connections
          to end → timer wheel → router streams (their last announcements leave first)
          or backend close (flush the committer, finish pushes in flight, stop the
          cleaner, close the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request

from pushgate.auth import ApiKeys, Identity, TokenCodec
from pushgate.errors import (
    CloseCode,
    Forbidden,
    InvalidRequest,
    NotConfigured,
    PushgateError,
    RateLimited,
    StartupError,
)
from pushgate.hub.gaps import GapFiller
from pushgate.hub.limits import ConnectionLimits
from pushgate.hub.public_open import PublicOpen
from pushgate.hub.registry import LocalHubs, Registry
from pushgate.hub.remote import RemoteRouter
from pushgate.hub.routers import Routers
from pushgate.hub.session import Session
from pushgate.hub.wheel import TimerWheel
from pushgate.logs import get_logger
from pushgate.metrics import GatewayMetrics
from pushgate.protocol import MAX_CLIENT_ID_LEN, client_key
from pushgate.ratelimit import Buckets
from pushgate.router.backend import RoutingBackend
from pushgate.router.base import RoutingCore, SendResult
from pushgate.router.requests import Limits, parse_send
from pushgate.settings import Settings
from pushgate.tasks import cancel_and_wait

if TYPE_CHECKING:
    from pushgate.hub.connection import WsConnection

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
            routers = self.routers
            routers.metrics = self.metrics
            self.metrics.count_router_links(lambda: sum(c.up for c in routers.conns))
        else:
            self.backend = RoutingBackend(settings, LocalHubs(self.registry), self.metrics)
            self.router = self.backend.router
        self.gaps = GapFiller(self.router, settings.gap_hold_ms, settings.fetch_max_limit,
                              settings.inline_event_max_bytes, self.metrics, self.spawn)
        if self.routers is not None:
            self.routers.on_relink = self._catch_up_sessions
        self.send_limits = Limits.of(settings)
        self.conn_limits = ConnectionLimits.of(settings)  # per client IP, hub.limits
        rate = settings.client_send_rate_per_user  # per sending user (client_send_allowed)
        self.client_sends = Buckets(rate, 2 * rate)
        self.public_open = PublicOpen.of(settings)  # the keyless Pushca /open-connection
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
        self._stopped = False
        # a bad offline-push credential found at start: the CLI's message (exit code 2)
        self.startup_error: Exception | None = None
        self.connections: set[WsConnection] = set()  # open websocket connections
        self.no_connections = asyncio.Event()  # set while there are none (shutdown waits)
        self.no_connections.set()
        # every connection's clocks (pings, idle, token expiry, write deadline, close grace)
        self.wheel: TimerWheel[WsConnection] = TimerWheel(wheel_period(settings))
        self._tasks: set[asyncio.Task[Any]] = set()

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
            if not self.settings.directory_url.startswith("memory://"):
                raise StartupError(
                    f"directory_url {_redact(self.settings.directory_url)}: the embedded "
                    "gateway keeps its sessions in memory (memory://); a Redis directory "
                    "is for `pushgate router` (set routers to run this hub in a cluster)")
            await self.backend.start()
        self.wheel.start()
        self.started = True
        if self.backend is not None:
            log.info("gateway started", hub=self.hub_id, store=_redact(self.backend.store_url))
        else:
            log.info("gateway started (cluster hub)", hub=self.hub_id,
                     routers=self.settings.routers)

    async def begin_shutdown(self, abort: Callable[[], bool] = lambda: False) -> None:
        """Stop taking sessions and close the live ones with SHUTDOWN (reconnect).
        ``abort()`` true (a second Ctrl-C) ends the wait for their connections."""
        if self.shutting_down:
            return
        self.shutting_down = True
        sessions = list(self.registry)
        for s in sessions:
            s.close(CloseCode.SHUTDOWN, "server shutting down; reconnect")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_grace_s
        while self.connections and loop.time() < deadline and not abort() and not all(
                c.close_flushed for c in self.connections):
            with contextlib.suppress(TimeoutError):  # queued frames and close frames out
                await asyncio.wait_for(self.no_connections.wait(), 0.05)
        if self.backend is not None:  # no session of this process can ack any more
            self.backend.router.release_ack_waiters()
        for c in list(self.connections):  # our side ends; theirs within close_grace_s
            c.end()
        while self.connections and loop.time() < deadline and not abort():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.no_connections.wait(),
                                       min(0.1, deadline - loop.time()))
        log.info("sessions closed", closed=len(sessions), left=len(self.connections))

    async def stop(self) -> None:
        if self._stopped:  # (after a second Ctrl-C the server stops it)
            return
        self._stopped = True
        await self.begin_shutdown()
        await self.wheel.stop()
        for t in list(self._tasks):
            await cancel_and_wait(t)
        if self.routers is not None:
            await self.routers.close()
        if self.backend is not None:
            await self.backend.close()
        log.info("gateway stopped", hub=self.hub_id)

    def _catch_up_sessions(self) -> None:
        """A HubLink came back after a loss: every open session fetches from the store
        what it may have missed (Session.catch_up; docs/cluster.md, failures)."""
        n = sum(1 for s in list(self.registry) if s.catch_up())
        if n:
            log.info("router linked again: sessions catch up from the store", sessions=n)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task the node keeps (and cancels at stop); its failure is logged."""
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._task_done)

    def _task_done(self, t: asyncio.Task[Any]) -> None:
        self._tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.error("hub task failed", exc_info=t.exception())

    def forget(self, session: Session) -> None:
        """Take a closed session out of the directory (in the background)."""
        self.spawn(self._disconnect(session))

    async def _disconnect(self, session: Session) -> None:
        try:
            await self.router.disconnect(session.info)
        except PushgateError as e:  # the directory drops it on the hub's next re-sync
            self.metrics.error(e.code)

    # -- operations the endpoints share ------------------------------------------------------

    def ws_base(self, request: Request) -> str:
        """``ws(s)://host[:port]`` clients reach this gateway at: ``public_url``, else
        the request's (scheme and client from X-Forwarded-* behind trusted_proxies)."""
        if self.settings.public_url:  # (an http(s):// one names the same host: ws(s)://)
            url = self.settings.public_url.rstrip("/")
            return "ws" + url[4:] if url.startswith("http") else url
        scheme = "wss" if request.url.scheme in ("https", "wss") else "ws"
        return f"{scheme}://{request.url.netloc}"

    def open_connection(self, request: Request, identity: Identity,
                        scope: str | None = None) -> dict[str, Any]:
        if not self.tokens.can_mint:
            raise NotConfigured("open-connection needs a signing key: set jwt_secret or "
                                "jwt_private_key", field="jwt_private_key")
        raw, token = self.tokens.mint(identity, self.settings.token_ttl_s, scope)
        return {"url": f"{self.ws_base(request)}/v1/ws?token={raw}", "token": raw,
                "expires_at": token.expires_at}

    def client_send_allowed(self, sender: Identity, field: str) -> None:
        """Raise unless ``sender`` may send now: ``allow_client_send`` (403) and its
        ``client_send_rate_per_user`` (429 ``rate_limited``: one client could otherwise
        broadcast thousands of sends a second to its whole workspace)."""
        if not self.settings.allow_client_send:
            raise Forbidden("client sends are disabled on this server", field=field)
        if self.client_sends.rate <= 0:  # off (the default): no clock read per send
            return
        wait = self.client_sends.take(sender.user, time.monotonic())
        if wait > 0:
            rate = self.settings.client_send_rate_per_user
            raise RateLimited(f"more than {rate:g} sends per second from this user "
                              f"(client_send_rate_per_user); retry in {wait:.1f} s",
                              field=field)

    async def client_send(self, sender: Identity, body: dict[str, Any]) -> SendResult:
        """A send from a client's websocket: the body is wrapped with the sender's identity
        (so recipients know who sent it) and filters stay inside the sender's workspace."""
        self.client_send_allowed(sender, "type")
        if "body" not in body:
            raise InvalidRequest("'body' is required", field="body")
        push = body.get("push")
        if isinstance(push, dict):
            for name in CLIENT_PUSH_REFUSED:
                if push.get(name) is not None:
                    # the raw provider overrides are the business server's: an apns-topic
                    # of another app made APNs answer DeviceTokenNotForTopic and the
                    # recipient's device token was removed as dead
                    raise Forbidden(f"'push.{name}' (a raw provider override) is not "
                                    "allowed in a client's send", field=f"push.{name}")
        flt = body.get("filter")
        if isinstance(flt, dict):
            ws = flt.get("workspace")
            if ws is not None and ws != sender.workspace:
                raise InvalidRequest("a client may only send inside its own workspace",
                                     field="filter.workspace")
            body = {**body, "filter": {**flt, "workspace": sender.workspace}}
        # validated as over HTTP (max_body_bytes limits the sender's body), then the
        # encoded body wrapped: the bytes orjson gives {"from": ..., "body": <body>}
        request = parse_send(body, self.send_limits)
        sender_ref = orjson.dumps({"user": sender.user, "workspace": sender.workspace,
                                   "device": sender.device, "application": sender.application})
        wrapped = b'{"from":' + sender_ref + b',"body":' + request.body + b"}"
        return await self.router.send(replace(request, body=wrapped,
                                              id=client_send_key(sender, request.id)))


def client_send_key(sender: Identity, event_id: str | None) -> str | None:
    """A client's send ``id`` as stored: scoped to the sender (a client that guessed an
    id the business server will use for a recipient made the server's send a duplicate)."""
    if event_id is None:
        return None
    if len(event_id) > MAX_CLIENT_ID_LEN:
        raise InvalidRequest(f"id is longer than {MAX_CLIENT_ID_LEN} characters (a "
                             "client's send)", field="id")
    return client_key(sender.user, event_id)


#: What a client's ``send`` may not put in its ``push`` (the HTTP and gRPC APIs may).
CLIENT_PUSH_REFUSED = ("apns", "android", "webpush")


def wheel_period(settings: Settings) -> float:
    """How often the timer wheel visits each connection: a check fires at most this
    late (docs/protocol.md, keepalive)."""
    return min(10.0, settings.idle_timeout_s / 4, settings.ping_interval_s / 2,
               settings.ping_timeout_s / 2)


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
