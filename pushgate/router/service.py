"""``pushgate router``: the routing core behind a ``grpc.aio`` server.

Serves the two services of ``proto/pushgate/rpc/pushgate.proto``:

* ``Gateway`` (business servers, and hubs forwarding their HTTP API): the same
  validation and errors as the HTTP API (errors travel in the ``pushgate-error-bin``
  trailer, see :mod:`pushgate.router.wire`).
* ``HubLink``: one stream per hub. The hub's ``Hello`` re-syncs its sessions into the
  directory; ``Online`` runs the cluster-wide quota (kicks travel back as ``Kick``);
  deliveries go out batched (:class:`pushgate.router.link.ClusterLink`).

Liveness: every ``hub_heartbeat_ttl_s / 3`` the router refreshes the heartbeat key of
each hub linked to it, removes the sessions of hubs whose heartbeat expired, and asks
all hubs to re-sync when the directory's epoch marker is gone (Redis lost its data).
A hub stream silent for ``hub_heartbeat_ttl_s`` is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc import aio

from pushgate.auth import ApiKeys, Identity
from pushgate.errors import Internal, PushgateError, Unauthorized
from pushgate.logs import get_logger
from pushgate.metrics import GatewayMetrics
from pushgate.router import wire
from pushgate.router.backend import RoutingBackend
from pushgate.router.directory import DirectoryUnavailable
from pushgate.router.link import ClusterLink, HubStream
from pushgate.router.requests import Limits, parse_send
from pushgate.rpc import pushgate_pb2 as pb
from pushgate.rpc import pushgate_pb2_grpc as pb_grpc
from pushgate.settings import Settings

log = get_logger("pushgate.router")

SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]


def _status(e: PushgateError) -> grpc.StatusCode:
    return grpc.StatusCode[e.mapping.grpc_status]


async def _abort(context: aio.ServicerContext, e: PushgateError) -> None:
    await context.abort(_status(e), e.message, trailing_metadata=(
        (wire.ERROR_TRAILER, wire.error_to_pb(e).SerializeToString()),))


class RouterNode:
    """Everything one router process runs: store, committer, directory, link, core."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.node_id = f"router-{secrets.token_hex(6)}"
        self.metrics = GatewayMetrics()
        self.api_keys = ApiKeys(settings.api_keys)
        self.link = ClusterLink()
        self.backend = RoutingBackend(settings, self.link, self.metrics)
        self.router = self.backend.router
        self.directory = self.backend.directory
        self.send_limits = Limits(settings.max_body_bytes, settings.max_users_per_send,
                                  settings.event_ttl_s, settings.max_event_ttl_s,
                                  settings.ack_timeout_ms)
        self.server: aio.Server | None = None
        self.port = 0
        self._liveness: asyncio.Task[None] | None = None
        self._metrics_server: Any = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.backend.start()
        self.server = aio.server(options=SERVER_OPTIONS)
        pb_grpc.add_GatewayServicer_to_server(  # type: ignore[no-untyped-call]
            GatewayService(self), self.server)
        pb_grpc.add_HubLinkServicer_to_server(  # type: ignore[no-untyped-call]
            HubLinkService(self), self.server)
        self.port = self.server.add_insecure_port(self.settings.router_listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.settings.router_listen}")
        await self.server.start()
        self._liveness = asyncio.create_task(self._liveness_loop())
        if self.settings.router_metrics_listen:
            from prometheus_client import start_http_server

            host, _, port = self.settings.router_metrics_listen.rpartition(":")
            self._metrics_server, _ = start_http_server(
                int(port), addr=host or "127.0.0.1", registry=self.metrics.registry)
        log.info("router started", node=self.node_id, port=self.port)

    async def stop(self, grace_s: float = 5.0) -> None:
        if self._liveness is not None:
            self._liveness.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._liveness
        if self.server is not None:
            await self.server.stop(grace_s)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        await self.link.close()
        await self.backend.close()
        log.info("router stopped", node=self.node_id)

    # -- liveness ----------------------------------------------------------------------------

    async def _liveness_loop(self) -> None:
        ttl = self.settings.hub_heartbeat_ttl_s
        redis_dir = hasattr(self.directory, "heartbeat")
        while True:
            try:
                now = time.monotonic()
                for stream in list(self.link.hubs.values()):
                    if now - stream.last_rx > ttl:
                        log.warning("hub link silent; dropping it", hub=stream.hub_id)
                        self.link.detach(stream)
                if redis_dir:
                    d: Any = self.directory
                    if await d.claim_epoch(self.node_id):
                        log.info("directory is new or lost its data: hubs re-sync")
                        self.link.resync_all()
                    await d.heartbeat(self.link.hubs.keys(), ttl)
                    for hub in await d.dead_hubs():
                        if hub not in self.link.hubs:
                            n = await d.remove_hub(hub)
                            log.info("hub is dead: sessions removed", hub=hub, sessions=n)
            except DirectoryUnavailable as e:
                log.warning("directory unavailable", error=str(e))
            except Exception:  # keep the loop alive whatever happens
                log.exception("liveness round failed")
            await asyncio.sleep(ttl / 3)

    def check_auth(self, context: aio.ServicerContext) -> None:
        md = dict(context.invocation_metadata() or ())
        self.api_keys.check(md.get("authorization"))


class GatewayService(pb_grpc.GatewayServicer):
    def __init__(self, node: RouterNode) -> None:
        self.node = node

    async def _run(self, context: aio.ServicerContext, op: Any) -> Any:
        try:
            self.node.check_auth(context)
            return await op()
        except PushgateError as e:
            self.node.metrics.error(e.code)
            await _abort(context, e)
        except Exception as e:
            log.exception("router call failed")
            await _abort(context, Internal(f"internal error: {type(e).__name__}"))

    async def Send(self, request: pb.SendRequest, context: aio.ServicerContext) -> pb.SendReply:
        async def op() -> pb.SendReply:
            req = parse_send(wire.send_to_dict(request), self.node.send_limits)
            return wire.result_to_pb(await self.node.router.send(req), request.tag)

        return await self._run(context, op)  # type: ignore[no-any-return]

    async def SendStream(self, request_iterator: AsyncIterator[pb.SendRequest],
                         context: aio.ServicerContext) -> AsyncIterator[pb.SendReply]:
        try:
            self.node.check_auth(context)
        except PushgateError as e:
            await _abort(context, e)
        replies: asyncio.Queue[pb.SendReply | None] = asyncio.Queue()
        pending: set[asyncio.Task[None]] = set()

        async def one(m: pb.SendRequest) -> None:
            try:
                req = parse_send(wire.send_to_dict(m), self.node.send_limits)
                await replies.put(wire.result_to_pb(await self.node.router.send(req), m.tag))
            except PushgateError as e:
                await replies.put(pb.SendReply(tag=m.tag, error=wire.error_to_pb(e)))

        async def feed() -> None:
            async for m in request_iterator:
                t = asyncio.create_task(one(m))
                pending.add(t)
                t.add_done_callback(pending.discard)
            while pending:
                await asyncio.gather(*list(pending))
            await replies.put(None)

        feeder = asyncio.create_task(feed())
        try:
            while (r := await replies.get()) is not None:
                yield r
        finally:
            feeder.cancel()

    async def FetchEvents(self, request: pb.FetchRequest, context: aio.ServicerContext) -> pb.FetchReply:
        async def op() -> pb.FetchReply:
            user = _user(request.user)
            limit = request.limit or 100
            if not 1 <= limit <= self.node.settings.fetch_max_limit:
                from pushgate.errors import InvalidRequest

                raise InvalidRequest(f"'limit' must be in 1..{self.node.settings.fetch_max_limit}",
                                     field="limit")
            events, head, more = await self.node.router.fetch(user, max(0, request.after), limit)
            return pb.FetchReply(events=[wire.event_to_pb(e) for e in events], head=head, more=more)

        return await self._run(context, op)  # type: ignore[no-any-return]

    async def MarkRead(self, request: pb.MarkReadRequest, context: aio.ServicerContext) -> pb.ReadStateReply:
        async def op() -> pb.ReadStateReply:
            rs = await self.node.router.mark_read(
                _user(request.user), list(request.seqs),
                [(r.first, r.last) for r in request.ranges])
            return wire.read_state_to_pb(rs)

        return await self._run(context, op)  # type: ignore[no-any-return]

    async def ReadState(self, request: pb.UserRequest, context: aio.ServicerContext) -> pb.ReadStateReply:
        async def op() -> pb.ReadStateReply:
            return wire.read_state_to_pb(await self.node.router.read_state(_user(request.user)))

        return await self._run(context, op)  # type: ignore[no-any-return]

    async def Sessions(self, request: pb.UserRequest, context: aio.ServicerContext) -> pb.SessionsReply:
        async def op() -> pb.SessionsReply:
            found = await self.node.router.sessions(_user(request.user))
            return pb.SessionsReply(sessions=[wire.session_to_pb(s) for s in found])

        return await self._run(context, op)  # type: ignore[no-any-return]


    async def RegisterDevice(self, request: pb.DeviceRequest, context: aio.ServicerContext) -> pb.Device:
        async def op() -> pb.Device:
            d = await self.node.router.register_device(
                _user(request.user), request.app, request.platform, request.token)
            return wire.device_to_pb(d)

        return await self._run(context, op)  # type: ignore[no-any-return]

    async def RemoveDevice(self, request: pb.DeviceRequest,
                           context: aio.ServicerContext) -> pb.RemoveDeviceReply:
        async def op() -> pb.RemoveDeviceReply:
            removed = await self.node.router.remove_device(
                _user(request.user), request.app, request.platform, request.token)
            return pb.RemoveDeviceReply(removed=removed)

        return await self._run(context, op)  # type: ignore[no-any-return]

    async def Devices(self, request: pb.UserRequest, context: aio.ServicerContext) -> pb.DevicesReply:
        async def op() -> pb.DevicesReply:
            found = await self.node.router.devices(_user(request.user))
            return pb.DevicesReply(devices=[wire.device_to_pb(d) for d in found])

        return await self._run(context, op)  # type: ignore[no-any-return]


def _user(user: str) -> str:
    from pushgate.auth import check_id

    return check_id(user, "user")


class HubLinkService(pb_grpc.HubLinkServicer):
    def __init__(self, node: RouterNode) -> None:
        self.node = node
        self._tasks: set[asyncio.Task[None]] = set()

    async def Link(self, request_iterator: Any, context: aio.ServicerContext) -> None:
        node = self.node
        try:
            node.check_auth(context)
        except Unauthorized as e:
            await _abort(context, e)
        first = await context.read()
        if first is aio.EOF or first.WhichOneof("kind") != "hello":
            await _abort(context, Internal("a HubLink stream starts with Hello"))
        hub = first.hello.hub_id
        stream = node.link.attach(hub)
        log.info("hub linked", hub=hub, sessions=len(first.hello.sessions))
        writer = asyncio.create_task(self._write(context, stream))
        try:
            await self._hello(stream, first.hello)
            while True:
                msg = await context.read()
                if msg is aio.EOF:
                    break
                stream.last_rx = time.monotonic()
                await self._handle(stream, msg)
        except (asyncio.CancelledError, aio.AioRpcError):
            pass
        finally:
            node.link.detach(stream)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            log.info("hub unlinked", hub=hub)

    async def _send(self, stream: HubStream, m: pb.SendRequest) -> None:
        try:
            req = wire.send_from_hub(m, self.node.send_limits)
            reply = wire.result_to_pb(await self.node.router.send(req), m.tag)
        except PushgateError as e:
            self.node.metrics.error(e.code)
            reply = pb.SendReply(tag=m.tag, error=wire.error_to_pb(e))
        except Exception as e:
            log.exception("send failed")
            reply = pb.SendReply(tag=m.tag, error=wire.error_to_pb(
                Internal(f"internal error: {type(e).__name__}")))
        self.node.link.reply(stream, reply)

    async def _write(self, context: aio.ServicerContext, stream: HubStream) -> None:
        while (msg := await stream.queue.get()) is not None:
            await context.write(msg)

    async def _hello(self, stream: HubStream, hello: pb.Hello) -> None:
        sessions = [wire.session_from_pb(s) for s in hello.sessions]
        try:
            added, removed = await self.node.directory.sync_hub(
                stream.hub_id, sessions, hello.snapshot_at)
            if added or removed:
                log.info("hub re-synced", hub=stream.hub_id, added=added, removed=removed)
        except DirectoryUnavailable as e:
            log.warning("hub re-sync failed; asking again later", hub=stream.hub_id, error=str(e))
            loop = asyncio.get_running_loop()
            loop.call_later(1.0, stream.send, pb.RouterMessage(resync=pb.Resync()))

    async def _handle(self, stream: HubStream, msg: pb.HubMessage) -> None:
        kind = msg.WhichOneof("kind")
        router = self.node.router
        if kind == "acks":
            for a in msg.acks.acks:
                router.on_ack(Identity(a.user, device=a.device), a.session_id, a.seq)
        elif kind == "online":
            done = pb.OnlineDone(rid=msg.online.rid)
            try:
                kicked = await router.connect(wire.session_from_pb(msg.online.session))
                done.kicked = len(kicked)
            except PushgateError as e:
                done.error.CopyFrom(wire.error_to_pb(e))
            stream.send(pb.RouterMessage(online_done=done))
        elif kind == "offline":
            info = msg.offline
            try:
                await self.node.directory.remove(info.user, info.session_id, stream.hub_id)
            except DirectoryUnavailable as e:  # the hub's next re-sync drops it
                log.warning("session removal failed", error=str(e))
        elif kind == "sends":
            for m in msg.sends.items:
                t = asyncio.create_task(self._send(stream, m))
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)
        elif kind == "broadcast_done":
            self.node.link.broadcast_done(msg.broadcast_done.rid, msg.broadcast_done.sessions)
        elif kind == "hello":
            await self._hello(stream, msg.hello)
        # heartbeat: last_rx is enough


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
    host = settings.router_listen.rsplit(":", 1)[0]
    print(f"PUSHGATE_ROUTER_LISTENING {host}:{node.port}", file=sys.stdout, flush=True)
    await stop.wait()
    log.info("router stopping", pid=os.getpid())
    await node.stop(settings.shutdown_grace_s)
