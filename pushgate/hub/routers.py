"""The hub's side of the cluster: :class:`Routers`, one :class:`RouterConn` per router.

Each :class:`RouterConn` keeps a HubLink open (reconnecting with exponential backoff and
jitter): on the router's framed transport (:mod:`pushgate.rpc.framed`, a plain TCP
connection to the port ``HubLink.Transport`` names) when it has one, else as gRPC's
``Link`` stream. On every (re)connect it sends ``Hello`` with all sessions of this hub,
so the directory is rebuilt whatever happened to the router or to Redis. Incoming
deliveries, kicks and broadcasts go straight to the :class:`Registry`. Sends batched on
the stream and the ``Gateway`` stubs serve :class:`pushgate.hub.remote.RemoteRouter`.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc import aio

from pushgate.errors import Overloaded
from pushgate.hub.registry import Registry
from pushgate.logs import get_logger
from pushgate.metrics import VERSION, GatewayMetrics
from pushgate.router import wire
from pushgate.router.directory.quota import SessionInfo
from pushgate.rpc import pushgate_pb2 as pb
from pushgate.rpc import pushgate_pb2_grpc as pb_grpc
from pushgate.rpc.framed import FramedLink
from pushgate.tasks import cancel_and_wait

log = get_logger("pushgate.hub.routers")

CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]
ONLINE_TIMEOUT_S = 5.0
# Acks of seqs a session got from the store go to every router that is up; a router
# that links later gets those of the last STORE_ACK_REPLAY_S (the longest ack wait): a
# send with ack waiting on it may have routed the event before this hub linked to it.
STORE_ACK_REPLAY_S = 60.0
STORE_ACK_REPLAY_MAX = 10_000


def local_t0(sent_at: float) -> float:
    """The router's unix send time as this process's ``perf_counter`` instant."""
    return time.perf_counter() - max(0.0, time.time() - sent_at)


class RouterConn:
    """One router: its channel, stubs and the HubLink stream (kept open)."""

    def __init__(self, address: str, routers: Routers) -> None:
        self.address = address
        self.routers = routers
        self.channel: aio.Channel | None = None  # made in start(): bound to the running loop
        self.gateway: Any = None
        self.hublink: Any = None
        self.up = False
        self.leaving = False  # the router is stopping: nothing new goes to it
        self._orderly = False  # the last link ended with the router's orderly leave
        self.last_rx = 0.0  # monotonic time of the last message from the router
        self._out: asyncio.Queue[pb.HubMessage] = asyncio.Queue()
        # where send() puts a message: the gRPC call's queue, or the framed link's write
        self._sink: Callable[[pb.HubMessage], None] = self._out.put_nowait
        self.transport = ""  # of the current link: "framed" or "grpc"
        self._acks: list[pb.Ack] = []
        self._sends: list[pb.SendRequest] = []
        self._online: dict[int, asyncio.Future[pb.OnlineDone]] = {}
        self._replies: dict[int, asyncio.Future[pb.SendReply]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.channel = aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        self.gateway = pb_grpc.GatewayStub(self.channel)  # type: ignore[no-untyped-call]
        self.hublink = pb_grpc.HubLinkStub(self.channel)  # type: ignore[no-untyped-call]
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        # let the last announcements (Offline of the sessions just closed) leave first
        for _ in range(20):
            if not self.up or self._out.empty():
                break
            await asyncio.sleep(0.05)
        await cancel_and_wait(self._task)
        if self.channel is not None:
            await self.channel.close()

    def send(self, msg: pb.HubMessage) -> None:
        if self.up:
            self._sink(msg)

    def ack(self, a: pb.Ack) -> None:
        if not self.up:
            return
        if not self._acks:
            asyncio.get_running_loop().call_soon(self._flush_acks)
        self._acks.append(a)

    def _flush_acks(self) -> None:
        acks, self._acks = self._acks, []
        if acks:
            self.send(pb.HubMessage(acks=pb.Acks(acks=acks)))

    async def request_send(self, m: pb.SendRequest, deadline_s: float) -> pb.SendReply:
        """A send on the stream, batched with the others of this loop turn."""
        if not self.up:
            raise Overloaded(f"router {self.address} link lost", code="router_unavailable")
        fut: asyncio.Future[pb.SendReply] = asyncio.get_running_loop().create_future()
        self._replies[m.tag] = fut
        if not self._sends:
            asyncio.get_running_loop().call_soon(self._flush_sends)
        self._sends.append(m)
        try:
            async with asyncio.timeout(deadline_s):  # (cheaper than wait_for: no waiter)
                return await fut
        except TimeoutError:
            raise Overloaded(f"router {self.address} did not answer a send in time; retry "
                             "with the same id", code="router_unavailable") from None
        finally:
            self._replies.pop(m.tag, None)

    def _flush_sends(self) -> None:
        sends, self._sends = self._sends, []
        if sends:
            self.send(pb.HubMessage(sends=pb.SendBatch(items=sends)))

    async def online(self, info: SessionInfo, rid: int) -> pb.OnlineDone:
        fut: asyncio.Future[pb.OnlineDone] = asyncio.get_running_loop().create_future()
        self._online[rid] = fut
        try:
            self.send(pb.HubMessage(online=pb.Online(rid=rid, session=wire.session_to_pb(info))))
            return await asyncio.wait_for(fut, ONLINE_TIMEOUT_S)
        finally:
            self._online.pop(rid, None)

    # -- the stream --------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except aio.AioRpcError as e:
                log.warning("router link lost", router=self.address, code=e.code().name,
                            details=e.details())
            except ConnectionError as e:
                log.warning("router link lost", router=self.address, error=str(e))
            except Exception:
                log.exception("router link failed", router=self.address)
            finally:
                self._down()
            if time.monotonic() - started > 10:
                backoff = 0.1  # it was up for a while: reconnect quickly
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 5.0)

    def _down(self) -> None:
        was_up, self.up = self.up, False
        self._orderly = was_up and self.leaving  # (it sent what it had, then Left)
        self.leaving = False
        self._out = asyncio.Queue()  # the Hello of the next stream re-syncs everything
        self._sink = self._out.put_nowait
        self._acks = []
        self._sends = []
        futures: list[asyncio.Future[Any]] = [*self._online.values(), *self._replies.values()]
        for fut in futures:
            if not fut.done():  # a send may or may not have been stored: retry with its id
                fut.set_exception(Overloaded(f"router {self.address} link lost",
                                             code="router_unavailable"))
        if was_up:
            self.routers.changed()

    async def _session(self) -> None:
        """One link to the router, on its framed transport when it offers one (asked
        each time: the router may have restarted elsewhere), else on gRPC's stream."""
        ttl = self.routers.heartbeat_ttl_s
        port = 0
        if self.routers.framed:
            try:
                reply = await self.hublink.Transport(pb.TransportRequest(),
                                                     metadata=self.routers.metadata, timeout=ttl)
                port = reply.framed_port
            except aio.AioRpcError as e:
                if e.code() != grpc.StatusCode.UNIMPLEMENTED:  # (a router of before 0.x)
                    raise
        if port:
            host = self.address.rpartition(":")[0].strip("[]")
            try:
                async with asyncio.timeout(ttl):
                    _, link = await asyncio.get_running_loop().create_connection(
                        lambda: FramedLink(pb.RouterMessage.FromString), host, port)
            except (OSError, TimeoutError) as e:
                # a firewall or a Service that passes only the gRPC port: link over that
                log.warning("router's framed HubLink port unreachable; linking over gRPC",
                            router=self.address, port=port, error=str(e) or "timeout")
            else:
                await self._framed_session(link, port, ttl)
                return
        await self._grpc_session(ttl)

    async def _framed_session(self, link: FramedLink[pb.RouterMessage], port: int,
                              ttl: float) -> None:
        tasks: list[asyncio.Task[None]] = []
        try:
            # the router answers Hello with a heartbeat: only then is it up
            try:
                async with asyncio.timeout(ttl):
                    hello = self.routers.hello()
                    hello.hello.authorization = self.routers.authorization
                    link.send(hello)
                    first = await link.next_message()
            except TimeoutError:
                raise ConnectionError(f"router {self.address} did not answer Hello within "
                                      f"{ttl:g} s (framed link, port {port})") from None
            if first.WhichOneof("kind") == "refused":
                raise ConnectionError(f"router {self.address} refused the link: "
                                      f"{first.refused.message}")
            self._sink = link.send
            self._up("framed")
            self._handle(first)

            def handle(msg: pb.RouterMessage) -> None:
                self.last_rx = time.monotonic()
                self._handle(msg)

            link.set_handler(handle)
            tasks = [asyncio.create_task(self._heartbeat())]
            await self._watch(link.lost, ttl)
        finally:
            for t in tasks:
                t.cancel()
            link.close()

    async def _grpc_session(self, ttl: float) -> None:
        call = self.hublink.Link(metadata=self.routers.metadata)
        tasks: list[asyncio.Task[None]] = []
        try:
            # the router answers Hello with a heartbeat: only then is it up (a stopped
            # router accepts the TCP connection and then says nothing)
            try:
                async with asyncio.timeout(ttl):
                    await call.write(self.routers.hello())
                    first = await self._read(call)
            except TimeoutError:
                raise ConnectionError(f"router {self.address} did not answer Hello within "
                                      f"{ttl:g} s") from None
            self._up("grpc")
            self._handle(first)
            reader = asyncio.create_task(self._read_all(call))
            tasks = [reader, asyncio.create_task(self._write(call)),
                     asyncio.create_task(self._heartbeat())]
            await self._watch(reader, ttl)
        finally:
            for t in tasks:
                t.cancel()
            call.cancel()

    def _up(self, transport: str) -> None:
        self.up = True
        self.transport = transport
        self.last_rx = time.monotonic()
        self.routers.changed()
        log.info("router linked", router=self.address, transport=transport)
        if not self._orderly and self.routers.on_relink is not None:
            # deliveries on a link that was lost (or to this hub before it linked) are
            # gone: the sessions fetch what they missed (Session.catch_up)
            self.routers.on_relink()
        since = time.monotonic() - STORE_ACK_REPLAY_S
        for t, a in self.routers.store_acks:
            if t >= since:
                self.ack(a)

    async def _watch(self, reading: asyncio.Future[None], ttl: float) -> None:
        """Until ``reading`` ends (its error, or EOF) or the router is silent for ``ttl``:
        it heartbeats every ttl / 3, so a silent link is a router that stopped answering
        (SIGSTOP, a partition); the link goes down and new work goes to the other routers
        (checked here, not with a timer per read)."""
        while True:
            await asyncio.wait((reading,), timeout=ttl / 3)
            if reading.done():
                reading.result()
                raise ConnectionError(f"router {self.address} ended the link")
            if time.monotonic() - self.last_rx > ttl:
                raise ConnectionError(f"router {self.address} silent for {ttl:g} s")

    async def _read_all(self, call: Any) -> None:
        while True:
            msg = await self._read(call)
            self.last_rx = time.monotonic()
            self._handle(msg)

    async def _read(self, call: Any) -> pb.RouterMessage:
        msg = await call.read()
        if msg is aio.EOF:
            raise ConnectionError(f"router {self.address} ended the link")
        return msg  # type: ignore[no-any-return]

    async def _write(self, call: Any) -> None:
        out = self._out
        while True:
            await call.write(await out.get())

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.routers.heartbeat_s)
            self.send(pb.HubMessage(heartbeat=pb.Heartbeat(stats=self.routers.node_stats())))

    def _handle(self, msg: pb.RouterMessage) -> None:
        kind = msg.WhichOneof("kind")
        registry = self.routers.registry
        if kind == "deliveries":
            for d in msg.deliveries.items:
                registry.deliver(d.session_ids, d.frame, d.seq, local_t0(d.sent_at), d.want_ack)
                if d.want_ack:
                    routes = self.routers.ack_routes
                    for sid in d.session_ids:
                        known = routes.setdefault((sid, d.seq), [])
                        if self not in known:
                            known.append(self)
        elif kind == "kick":
            registry.kick(msg.kick.session_id, msg.kick.by or None)
        elif kind == "broadcast":
            b = msg.broadcast
            if b.match_only:  # a find_any's first step: who would match, in id order
                ids = registry.matching(wire.filter_from_pb(b.filter))
                done = pb.BroadcastDone(rid=b.rid, sessions=len(ids), session_ids=ids)
            else:
                done = pb.BroadcastDone(rid=b.rid, sessions=registry.broadcast(
                    wire.filter_from_pb(b.filter), b.frame, b.counter, local_t0(b.sent_at)))
            self.send(pb.HubMessage(broadcast_done=done))
        elif kind == "online_done":
            fut = self._online.get(msg.online_done.rid)
            if fut is not None and not fut.done():
                fut.set_result(msg.online_done)
        elif kind == "replies":
            for r in msg.replies.items:
                f = self._replies.get(r.tag)
                if f is not None and not f.done():
                    f.set_result(r)
        elif kind == "heartbeat":
            pass  # (reading it was the point)
        elif kind == "resync":
            self.send(self.routers.hello())
        elif kind == "leaving":  # new work goes to the other routers from now on
            log.info("router leaving", router=self.address)
            self.leaving = True
            self._flush_sends()  # what this turn batched still goes (answered), then Left
            self.send(pb.HubMessage(left=pb.Left()))


class Routers:
    """All routers of the cluster, as seen from one hub."""

    def __init__(self, addresses: Sequence[str], registry: Registry, api_key: str | None,
                 heartbeat_ttl_s: float, *, framed: bool = True) -> None:
        if not addresses:
            raise ValueError("cluster mode needs at least one router address")
        self.registry = registry
        self.hub_id = registry.hub_id
        self.authorization = f"Bearer {api_key}" if api_key else ""
        # the hub names itself: the router leaves the errors of these calls to its count
        self.metadata = ((("authorization", self.authorization),) if api_key else ()) + (
            (wire.HUB_METADATA, self.hub_id),)
        self.framed = framed  # use a router's framed HubLink transport when it has one
        self.heartbeat_ttl_s = heartbeat_ttl_s  # a router silent this long is down
        self.heartbeat_s = min(heartbeat_ttl_s / 3, 2.0)
        self.metrics: GatewayMetrics | None = None  # set by the HubNode: heartbeat stats
        self.on_relink: Callable[[], None] | None = None  # set by the HubNode: catch-ups
        self.conns = [RouterConn(a, self) for a in addresses]
        # (session, seq) of a frame pushed asking for its ack -> the routers that did
        self.ack_routes: dict[tuple[str, int], list[RouterConn]] = {}
        # (when, ack) of seqs sessions got from the store: replayed to a router that links
        self.store_acks: deque[tuple[float, pb.Ack]] = deque(maxlen=STORE_ACK_REPLAY_MAX)
        self.any_up = asyncio.Event()
        self._rr = itertools.count()
        self._rids = itertools.count(1)
        # the session announcements of this hub go to one router (spread over hubs)
        self._primary_start = hash(self.hub_id) % len(self.conns)

    def start(self) -> None:
        for c in self.conns:
            c.start()

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.conns))

    def changed(self) -> None:
        if any(c.up for c in self.conns):
            self.any_up.set()
        else:
            self.any_up.clear()

    def node_stats(self) -> pb.NodeStats:
        """This hub as its heartbeats describe it (a router's Status returns it)."""
        m = self.metrics
        if m is None:
            return pb.NodeStats(id=self.hub_id, kind="hub", version=VERSION)
        return pb.NodeStats(id=self.hub_id, kind="hub", version=VERSION,
                            started_at=m.started_at, stats=m.snapshot())

    def hello(self) -> pb.HubMessage:
        return pb.HubMessage(hello=pb.Hello(
            hub_id=self.hub_id, snapshot_at=time.time(), match_only=True,
            sessions=[wire.session_to_pb(s.info) for s in self.registry]))

    def primary(self) -> RouterConn:
        return self._first(self._primary_start)

    def pick(self) -> RouterConn:
        return self._first(next(self._rr))

    def pick_for(self, key: str) -> RouterConn:
        """The same router for ``key`` on every hub (while the same routers are up)."""
        return self._first(zlib.crc32(key.encode()) % len(self.conns))

    def _first(self, start: int) -> RouterConn:
        """The first linked router from ``start`` on, one that is not leaving if any."""
        n = len(self.conns)
        fallback = None
        for i in range(n):
            c = self.conns[(start + i) % n]
            if c.up:
                if not c.leaving:
                    return c
                fallback = fallback or c
        if fallback is not None:  # only leaving routers: they still serve until they go
            return fallback
        raise Overloaded("no router is reachable; try again shortly", code="router_unavailable")

    def next_rid(self) -> int:
        return next(self._rids)

    def forget_session(self, session_id: str) -> None:
        if self.ack_routes:
            for key in [k for k in self.ack_routes if k[0] == session_id]:
                del self.ack_routes[key]
