"""``pushgate router``: one router process — the routing core behind a ``grpc.aio``
server (the servicers are in :mod:`pushgate.router.servicers`).

start: backend (store, committer, cleaner, directory, bridge) → gRPC server → HubLink's
       framed listener (:mod:`pushgate.router.framedlink`; unless ``router_link_listen``
       is ``off``) → liveness loop → metrics endpoint → ``PUSHGATE_ROUTER_LISTENING
       host:port`` on stdout
stop:  liveness loop → framed listener (no new links) → the drain (Leaving, sends in
       flight answered, the links end) → gRPC server (``grace_s`` for calls in flight) →
       framed links left → metrics endpoint → backend

Liveness: every ``hub_heartbeat_ttl_s / 3`` the router refreshes the heartbeat key of
each hub linked to it, removes the sessions of hubs whose heartbeat expired, and asks
all hubs to re-sync when the directory's epoch marker is gone (Redis lost its data).
Heartbeats: every ``hub_heartbeat_ttl_s / 3`` (a task of its own, not waiting on Redis)
the router sends ``Heartbeat`` on each HubLink stream and drops the streams silent for
``hub_heartbeat_ttl_s`` (a stopped hub); hubs do the same (a stopped router).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from typing import Any

from grpc import aio

from pushgate.auth import ApiKeys
from pushgate.errors import StartupError
from pushgate.logs import get_logger
from pushgate.metrics import GatewayMetrics
from pushgate.router import servicers
from pushgate.router.backend import STORE_DEADLINE_S, RoutingBackend
from pushgate.router.directory import DirectoryUnavailable
from pushgate.router.framedlink import FramedLinkServer
from pushgate.router.hubs import LinkedHubs
from pushgate.router.requests import Limits
from pushgate.rpc import pushgate_pb2_grpc as pb_grpc
from pushgate.settings import Settings
from pushgate.tasks import cancel_and_wait

log = get_logger("pushgate.router")

#: the end of a drain: sends still waiting this long before its deadline are answered
#: ``shutting_down`` (their replies and trailers then go out before the server cuts)
FINAL_S = 0.5
#: the least time the store gets to finish at the end of a stop (its queued commits,
#: report counts), when the drain took the whole grace
CLOSE_MIN_S = 1.0
#: a live hub's longest pause between HubLink attempts (5 s backoff, +50 % jitter:
#: pushgate.hub.routers) and its connect: no hub is swept as dead before a router has
#: been up this long beyond the heartbeat ttl
HUB_RELINK_S = 8.0

SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]


class RouterNode:
    """Everything one router process runs: store, committer, directory, link, core."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.node_id = f"router-{secrets.token_hex(6)}"
        self.metrics = GatewayMetrics(sessions=False)
        self.api_keys = ApiKeys(settings.api_keys)
        self.hubs = LinkedHubs()
        self.metrics.count_linked_hubs(lambda: len(self.hubs.hubs))
        self.backend = RoutingBackend(settings, self.hubs, self.metrics,
                                      store_deadline_s=STORE_DEADLINE_S)
        self.router = self.backend.router
        self.directory = self.backend.directory
        self.send_limits = Limits.of(settings)
        self.fetch_max_limit = settings.fetch_max_limit
        self.stream_max_events = max(1, min(servicers.STREAM_MAX_EVENTS,
                                            settings.commit_max_pending // 4))
        self.server: aio.Server | None = None
        self.port = 0
        self.framed: FramedLinkServer | None = None  # HubLink's framed listener
        self.framed_port = 0
        self._liveness: asyncio.Task[None] | None = None
        self._topology: str | None = None  # the directory's primaries, last seen
        self._heartbeats: asyncio.Task[None] | None = None
        self._metrics_server: Any = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.backend.start()
        try:
            await self._listen()
        except StartupError:  # what started stops (no gRPC server left to its finalizer)
            await self.stop(0)
            raise
        log.info("router started", node=self.node_id, port=self.port,
                 framed_link_port=self.framed_port or None)
        if self.settings.directory_url.startswith("memory://"):
            log.warning("directory_url memory:// keeps the sessions in this router's memory: "
                        "run a single router so, or give every router the same Redis "
                        "(docs/cluster.md)")
        if not self.settings.store_url:
            log.warning("no store_url: the inboxes are a SQLite file in this router's "
                        "data_dir, which other routers do not see: give every router the "
                        "same MySQL (docs/cluster.md)", path=str(self.settings.data_dir))

    async def _listen(self) -> None:
        self.server = aio.server(options=SERVER_OPTIONS)
        self.gateway = servicers.GatewayService(self)
        servicers.add_gateway(self.gateway, self.server)
        self.link_service = servicers.HubLinkService(self)
        pb_grpc.add_HubLinkServicer_to_server(  # type: ignore[no-untyped-call]
            self.link_service, self.server)
        try:
            self.port = self.server.add_insecure_port(self.settings.router_listen)
        except RuntimeError:  # grpc's "Failed to bind": in use, or not an address here
            self.port = 0
        if self.port == 0:
            raise StartupError(f"router_listen {self.settings.router_listen}: cannot listen "
                               "there (the port is in use or the address is not this "
                               "machine's)")
        await self.server.start()
        link_listen = self.settings.router_link_address()
        if link_listen is not None:
            self.framed = FramedLinkServer(self.link_service, self.check_authorization,
                                           self.settings.hub_heartbeat_ttl_s)
            host, _, port = link_listen.rpartition(":")
            try:
                self.framed_port = await self.framed.start(host.strip("[]"), int(port))
            except OSError as e:
                raise StartupError(f"router_link_listen {link_listen}: {e.strerror or e}") \
                    from None
        self._started = time.monotonic()
        self._liveness = asyncio.create_task(self._liveness_loop())
        self._heartbeats = asyncio.create_task(self._heartbeat_loop())
        if self.settings.router_metrics_listen:
            from prometheus_client import start_http_server

            host, _, port = self.settings.router_metrics_listen.rpartition(":")
            try:
                self._metrics_server, _ = start_http_server(
                    int(port), addr=host.strip("[]") or "127.0.0.1",
                    registry=self.metrics.registry)
            except OSError as e:
                raise StartupError(f"router_metrics_listen {self.settings.router_metrics_listen}"
                                   f": {e.strerror or e}") from None

    async def stop(self, grace_s: float = 5.0) -> None:
        """Drain, then stop (all within ``grace_s``): every linked hub is told
        (``Leaving``) and routes new work to the other routers once it answered ``Left``;
        the hubs' sends in flight are answered; the gRPC server then takes no new calls
        (callers move to the other routers), and the calls in flight are answered — a
        send still waiting at the end (an ``ack`` send, a stalled store) with
        ``shutting_down``, a :data:`FINAL_S` before the deadline, so that its reply and
        its stream's trailer go out before the server cuts what is left."""
        for task in (self._liveness, self._heartbeats):
            await cancel_and_wait(task)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        final_s = min(FINAL_S, grace_s / 4)

        def left(reserve: float = 0.0) -> float:
            return max(0.0, deadline - reserve - loop.time())

        if self.framed is not None:
            self.framed.stop_listening()  # hubs that link now go to the other routers
        stopping = None
        if self.server is not None and grace_s > 0:
            self.gateway.leave()  # SendStreams end once answered: their clients move on
            await self.hubs.leave(grace_s)
            await self.link_service.drained(left())
            # no new gRPC calls from here on; those in flight run to their end
            stopping = asyncio.create_task(self.server.stop(max(left(), final_s)))
            await asyncio.sleep(0)  # (the server stops taking calls at once)
            await self.gateway.drained(left(final_s))
            self.gateway.close()  # what still waits is answered shutting_down, not cut
            await self.hubs.sent(left())  # the last replies
            await self.hubs.close()  # end the HubLink streams: the hubs relink elsewhere
            log.info("router drained", node=self.node_id)
        if self.server is not None:
            self.gateway.close()
            await (stopping if stopping is not None else self.server.stop(0))
        if self.framed is not None:
            await self.framed.close(max(0.0, deadline - loop.time()))
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        await self.hubs.close()
        try:
            # the store's last work (queued sends, report counts) within what is left of
            # the grace: a stalled store held the stop for as long as it stalled (38 s
            # with a 5 s grace), and an orchestrator's SIGKILL comes at its own limit
            await asyncio.wait_for(self.backend.close(), max(left(), CLOSE_MIN_S))
        except TimeoutError:
            log.warning("router stopped without the store's answer: the sends it was still "
                        "committing (answered shutting_down) may or may not be stored; a "
                        "retry with the same id is safe", node=self.node_id)
            await self.backend.abandon(CLOSE_MIN_S)
        log.info("router stopped", node=self.node_id)

    # -- liveness ----------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        """Heartbeats to the hubs and the check for silent ones: on their own, so that a
        Redis that stops answering (the liveness loop waits for it) does not make the
        hubs think this router stopped."""
        ttl = self.settings.hub_heartbeat_ttl_s
        while True:
            await asyncio.sleep(ttl / 3)
            self.hubs.heartbeat(ttl)

    async def _liveness_loop(self) -> None:
        ttl = self.settings.hub_heartbeat_ttl_s
        redis_dir = hasattr(self.directory, "heartbeat")
        while True:
            if redis_dir:
                # each step on its own: a primary that is down (its keys' slots not yet
                # failed over) does not stop the heartbeats kept on the others
                for step in (self._heartbeat, self._check_directory, self._sweep_dead_hubs):
                    try:
                        await step(ttl)
                    except DirectoryUnavailable as e:
                        log.warning("directory unavailable", step=step.__name__, error=str(e))
                        self.metrics.error("directory_unavailable")  # (an alert with no traffic)
                    except Exception:  # keep the loop alive whatever happens
                        log.exception("liveness step failed", step=step.__name__)
            await asyncio.sleep(ttl / 3)

    async def _heartbeat(self, ttl: float) -> None:
        d: Any = self.directory
        await d.heartbeat(self.hubs.hubs.keys(), ttl)

    async def _check_directory(self, ttl: float) -> None:
        """Ask every hub to re-sync when the directory may have lost writes: its
        primaries changed (a failover, a restart) or its epoch marker is gone (data lost)."""
        d: Any = self.directory
        topology = await d.topology()
        if self._topology is not None and topology != self._topology:
            log.info("directory primaries changed: hubs re-sync", before=self._topology,
                     now=topology)
            self.hubs.resync_all()
        self._topology = topology
        if await d.claim_epoch(self.node_id):
            log.info("directory is new or lost its data: hubs re-sync")
            self.hubs.resync_all()

    async def _sweep_dead_hubs(self, ttl: float) -> None:
        # Hub heartbeats are kept by the routers they link to: with every router down
        # for more than the ttl they all expired, and a router that started then swept
        # the live hubs (their sessions left the directory; sends found none) before
        # they had linked again. A live hub links within its longest reconnect pause:
        # until then only hubs seen linked here (and gone since) are swept.
        linked = self.hubs.hubs
        seen = self.hubs.seen
        settled = time.monotonic() - self._started >= ttl + HUB_RELINK_S
        if settled and seen is not None:
            self.hubs.seen = seen = None  # (needed no more)
        d: Any = self.directory
        for hub in await d.dead_hubs():
            if hub not in linked and (seen is None or hub in seen):
                n = await d.remove_hub(hub)
                log.warning("hub is dead: sessions removed", hub=hub, sessions=n)

    def check_auth(self, context: aio.ServicerContext) -> None:
        md = dict(context.invocation_metadata() or ())
        self.api_keys.check(md.get("authorization"))

    def listening(self) -> str:
        """``host:port`` of the gRPC server, then ``link=host:port`` (the framed HubLink)
        and ``metrics=host:port`` when those run: the rest of the announcement line."""
        s = self.settings
        parts = [f"{s.router_listen.rpartition(':')[0]}:{self.port}"]
        link = s.router_link_address()
        if link is not None and self.framed_port:
            parts.append(f"link={link.rpartition(':')[0]}:{self.framed_port}")
        if self._metrics_server is not None and s.router_metrics_listen:
            host = s.router_metrics_listen.rpartition(":")[0] or "127.0.0.1"
            parts.append(f"metrics={host}:{self._metrics_server.server_port}")
        return " ".join(parts)

    def check_authorization(self, authorization: str | None) -> None:
        """The framed HubLink's credential (its first Hello's ``authorization``)."""
        self.api_keys.check(authorization)


def run(settings: Settings) -> None:
    """Run a router until SIGTERM / SIGINT (the ``pushgate router`` command)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        pass
    asyncio.run(_main(settings))


async def _main(settings: Settings) -> None:
    node = RouterNode(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    print(f"PUSHGATE_ROUTER_LISTENING {node.listening()}", file=sys.stdout, flush=True)
    await stop.wait()
    log.info("router stopping", pid=os.getpid())
    await node.stop(settings.shutdown_grace_s)
