"""The router's two gRPC services (``proto/pushgate/rpc/pushgate.proto``), as thin shells
over the routing core:

* ``Gateway`` (business servers, and hubs forwarding their HTTP API): the same
  validation and errors as the HTTP API (errors travel in the ``pushgate-error-bin``
  trailer, see :mod:`pushgate.router.wire`): sends through ``parse_send``, read marks
  and devices through the HTTP API's models (:mod:`pushgate.models`), integers in the
  bounds (and with the messages) of the HTTP query parameters. A ``limit`` of 0 (unset)
  is the HTTP default; other scalar fields are checked as given (empty ``body`` bytes:
  no body; ``app`` not set: ``default``, set to ``""``: refused like ``"app": ""``).
  Bytes that are not a request message are ``invalid_request`` (:func:`add_gateway`); a
  send outlives a caller that went away, and the drain ends the streams
  (:class:`GatewayService`).
* ``HubLink``: one link per hub, as this service's ``Link`` stream or on the framed
  transport (:mod:`pushgate.router.framedlink`, whose port ``Transport`` names); both
  run :meth:`HubLinkService.run_link`. The hub's ``Hello`` re-syncs its sessions into
  the directory; ``Online`` runs the cluster-wide quota (kicks travel back as
  ``Kick``); deliveries go out batched (:class:`pushgate.router.hubs.LinkedHubs`).

The servicers get what they use as :class:`Deps` (the router process,
:class:`pushgate.router.node.RouterNode`, is one).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Protocol, cast

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

from pushgate import models
from pushgate.auth import Identity, check_id
from pushgate.errors import (
    Internal,
    InvalidRequest,
    Overloaded,
    PushgateError,
    ShuttingDown,
    Unauthorized,
)
from pushgate.logs import get_logger
from pushgate.metrics import VERSION, GatewayMetrics
from pushgate.router import wire
from pushgate.router.base import MAX_REPORTS_LIMIT
from pushgate.router.core import Router
from pushgate.router.directory import Directory, DirectoryUnavailable
from pushgate.router.hubs import HubStream, LinkedHubs
from pushgate.router.requests import Limits, parse_send
from pushgate.rpc import pushgate_pb2 as pb
from pushgate.rpc import pushgate_pb2_grpc as pb_grpc
from pushgate.tasks import cancel_and_wait

log = get_logger("pushgate.router")

DEFAULT_REPORTS = 20  # ListReports without a limit
DEFAULT_APP = "default"  # a device call without app (as PUT /v1/users/{user}/devices)
#: a link's Online/Offline messages waiting on the directory at once
DIRECTORY_CONCURRENCY = 64
#: how long a link's end waits for its tasks to finish after cancelling them
LINK_END_S = 5.0
#: an ``Online`` that arrives while a hub's re-sync is in progress is answered within
#: this of its arrival (refused when the re-sync or the directory takes longer): a new
#: connection is closed with 4003 within 3 s while Redis does not answer, also when the
#: failed removals of refused sessions made the hub re-sync (docs/cluster.md, failures;
#: the directory's own per-call deadline is the same)
ONLINE_DEADLINE_S = 3.0
DEFAULT_FETCH = 100  # FetchEvents without a limit (at most fetch_max_limit)


class Deps(Protocol):
    """What the servicers need from the router process."""

    router: Router
    hubs: LinkedHubs
    directory: Directory
    metrics: GatewayMetrics
    node_id: str
    send_limits: Limits
    fetch_max_limit: int
    framed_port: int  # HubLink's framed listener (0: none)
    stream_max_events: int  # a SendStream's events in flight (STREAM_MAX_EVENTS at most)

    def check_auth(self, context: aio.ServicerContext) -> None: ...


#: A ``SendStream`` reads a request only while its sends not answered yet are fewer than
#: this many and, with it, hold at most ``Deps.stream_max_events`` events (a quarter of
#: ``commit_max_pending``, which every send shares, and STREAM_MAX_EVENTS at most; one
#: request larger than that is read when nothing else is in flight): a sender faster
#: than the store is slowed by the stream's flow control instead of being refused
#: ``overloaded``.
STREAM_MAX_SENDS = 64
STREAM_MAX_EVENTS = 20_000


def _send_done(task: asyncio.Task[Any]) -> None:
    """Retrieve the outcome of a send nobody waits for any more (its caller went away):
    its error was the caller's to see, not the log's."""
    if not task.cancelled():
        task.exception()


def _from_hub(context: aio.ServicerContext) -> bool:
    return any(k == wire.HUB_METADATA for k, _ in context.invocation_metadata() or ())


def _status(e: PushgateError) -> grpc.StatusCode:
    return grpc.StatusCode[e.mapping.grpc_status]


async def _abort(context: aio.ServicerContext, e: PushgateError) -> None:
    await context.abort(_status(e), e.message, trailing_metadata=(
        (wire.ERROR_TRAILER, wire.error_to_pb(e).SerializeToString()),))


class _Undecodable:
    """What the Gateway's deserializers give for bytes that are not a valid message of
    the call's request type (bad UTF-8 in a string field, a truncated or garbled
    message): the call answers ``invalid_request`` (after the API key is checked), not
    gRPC's ``UNKNOWN`` with a traceback in the log."""

    __slots__ = ("reason", "type_name")

    def __init__(self, type_name: str, reason: str) -> None:
        self.type_name, self.reason = type_name, reason

    def error(self) -> InvalidRequest:
        return InvalidRequest(f"the request is not a valid {self.type_name} message "
                              f"({self.reason})")


def _decoder(cls: Any) -> Callable[[bytes], Any]:
    name = cls.DESCRIPTOR.full_name

    def decode(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except DecodeError as e:
            return _Undecodable(name, str(e) or "cannot decode it")

    return decode


def add_gateway(servicer: GatewayService, server: aio.Server) -> None:
    """``Gateway`` on ``server``: the generated registration's handlers, with request
    deserializers that turn undecodable bytes into :class:`_Undecodable` (each method
    refuses it as ``invalid_request``)."""
    handlers = {}
    service = pb.DESCRIPTOR.services_by_name["Gateway"]
    for method in service.methods:
        request_cls = getattr(pb, method.input_type.name)
        reply_cls = getattr(pb, method.output_type.name)
        make = (grpc.stream_stream_rpc_method_handler if method.client_streaming
                else grpc.unary_unary_rpc_method_handler)
        handlers[method.name] = make(
            getattr(servicer, method.name), request_deserializer=_decoder(request_cls),
            response_serializer=reply_cls.SerializeToString)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)


class GatewayService(pb_grpc.GatewayServicer):
    """The business servers' API. A send whose caller goes away (deadline, cancel) while
    it is in progress is carried through: stored, delivered and counted in its report
    as if the caller had waited (it learns of it by retrying with the same ``id``). While
    the router drains (:meth:`leave`) it still answers calls (until the server stops
    taking them), but ends every ``SendStream`` with ``shutting_down`` (retryable) once
    the requests it read are answered, so that stream clients move to another router;
    a send still waiting at the drain's end (:meth:`close`: an ``ack`` send, a stalled
    store) is answered ``shutting_down`` then, not cut by the server."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._sends: set[asyncio.Task[Any]] = set()  # sends in progress (callers may be gone)
        loop = asyncio.get_running_loop()
        self._leaving: asyncio.Future[None] = loop.create_future()  # done: the drain began
        self._closed: asyncio.Future[None] = loop.create_future()  # done: the drain's end

    @property
    def draining(self) -> bool:
        return self._leaving.done()

    def leave(self) -> None:
        """The drain begins: the ``SendStream`` calls read no more requests."""
        if not self._leaving.done():
            self._leaving.set_result(None)

    async def drained(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until the sends in progress are done."""
        if self._sends:
            await asyncio.wait(list(self._sends), timeout=timeout_s)

    def close(self) -> None:
        """The drain's end: calls still waiting for their send (an ``ack`` send, a stalled
        store) are answered ``shutting_down`` now, before the server cancels them."""
        self.leave()
        if not self._closed.done():
            self._closed.set_result(None)

    async def _send(self, req: Any) -> Any:
        """``router.send(req)`` in a task of its own that the caller's cancellation does
        not stop (a send that began is finished)."""
        if self._closed.done():
            raise ShuttingDown("this router is shutting down; retry on another router "
                               "(a send with the same 'id')")
        task = asyncio.create_task(self.deps.router.send(req))
        self._sends.add(task)
        task.add_done_callback(_send_done)
        task.add_done_callback(self._sends.discard)
        await asyncio.wait((task, self._closed), return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            raise ShuttingDown("this router stopped before the send was answered; retry "
                               "with the same 'id' (it is stored once)")
        return task.result()

    async def _run(self, context: aio.ServicerContext, op: Any, request: Any = None) -> Any:
        try:
            self.deps.check_auth(context)
            if isinstance(request, _Undecodable):
                raise request.error()
            return await op()
        except PushgateError as e:
            if not _from_hub(context):  # a hub counts the errors it answers its clients
                self.deps.metrics.error(e.code)
            await _abort(context, e)
        except Exception as e:
            log.exception("router call failed")
            await _abort(context, Internal(f"internal error: {type(e).__name__}"))

    async def Send(self, request: pb.SendRequest, context: aio.ServicerContext) -> pb.SendReply:
        async def op() -> pb.SendReply:
            req = parse_send(wire.send_to_dict(request), self.deps.send_limits)
            return wire.result_to_pb(await self._send(req), request.tag)

        return await self._run(context, op, request)  # type: ignore[no-any-return]

    async def SendStream(self, request_iterator: AsyncIterator[pb.SendRequest],
                         context: aio.ServicerContext) -> AsyncIterator[pb.SendReply]:
        """Replies in the order the sends finish, each with its request's ``tag``. An
        undecodable request ends the stream with ``invalid_request``; the drain ends it
        with ``shutting_down`` once the requests read before it are answered."""
        try:
            self.deps.check_auth(context)
            if self._leaving.done():
                raise ShuttingDown("this router is shutting down; open the stream on "
                                   "another router")
        except PushgateError as e:
            self.deps.metrics.error(e.code)
            await _abort(context, e)
        replies: asyncio.Queue[pb.SendReply | PushgateError | None] = asyncio.Queue()
        pending: set[asyncio.Task[None]] = set()
        metrics = self.deps.metrics
        in_flight = [0]  # events of the sends read and not answered yet
        max_events = self.deps.stream_max_events

        async def one(m: pb.SendRequest, events: int) -> None:
            try:
                req = parse_send(wire.send_to_dict(m), self.deps.send_limits)
                reply = wire.result_to_pb(await self._send(req), m.tag)
            except PushgateError as e:
                metrics.error(e.code)
                reply = pb.SendReply(tag=m.tag, error=wire.error_to_pb(e))
            except Exception as e:
                log.exception("router call failed")
                reply = pb.SendReply(tag=m.tag, error=wire.error_to_pb(
                    Internal(f"internal error: {type(e).__name__}")))
            in_flight[0] -= events
            replies.put_nowait(reply)

        async def read() -> PushgateError | None:
            async for m in request_iterator:
                if isinstance(m, _Undecodable):
                    return cast(_Undecodable, m).error()
                # backpressure: the next request is read once the stream's sends in flight
                # leave room for it; meanwhile HTTP/2 flow control holds the sender back
                # (it was read at once, and a fast campaign got 503 overloaded instead)
                events = max(1, len(m.users))
                while pending and (len(pending) >= STREAM_MAX_SENDS
                                   or in_flight[0] + events > max_events):
                    await asyncio.wait(list(pending), return_when=asyncio.FIRST_COMPLETED)
                in_flight[0] += events
                t = asyncio.create_task(one(m, events))
                pending.add(t)
                t.add_done_callback(pending.discard)
            return None

        async def feed() -> None:
            reader = asyncio.create_task(read())
            try:
                await asyncio.wait((reader, self._leaving), return_when=asyncio.FIRST_COMPLETED)
                if reader.done():  # the client half-closed, sent garbage or went away
                    end = None if reader.cancelled() or reader.exception() is not None \
                        else reader.result()
                else:  # the drain: read no more, answer what was read
                    await cancel_and_wait(reader)
                    end = ShuttingDown("this router is shutting down; send the requests not "
                                       "answered on this stream to another router (with "
                                       "the same 'id')")
            finally:
                if not reader.done():  # (the call ended)
                    reader.cancel()
                while pending:  # the sends read so far are answered (they cannot be stopped)
                    await asyncio.wait(list(pending))
            replies.put_nowait(end)

        feeder = asyncio.create_task(feed())
        try:
            while isinstance(r := await replies.get(), pb.SendReply):
                yield r
            if r is not None:
                metrics.error(r.code)
                await _abort(context, r)
        finally:
            feeder.cancel()  # (the sends it started go on)

    async def FetchEvents(self, request: pb.FetchRequest, context: aio.ServicerContext) -> pb.FetchReply:
        async def op() -> pb.FetchReply:
            # GET /v1/users/{user}/events: the user, then after, then limit
            user = _user(request.user)
            after = _bounded(request.after, "after", 0, models.MAX_SEQ)
            max_limit = self.deps.fetch_max_limit
            limit = _bounded(request.limit or min(DEFAULT_FETCH, max_limit), "limit", 1,
                             max_limit)
            events, head, more = await self.deps.router.fetch(user, after, limit)
            return pb.FetchReply(events=[wire.event_to_pb(e) for e in events], head=head, more=more)

        return await self._run(context, op, request)  # type: ignore[no-any-return]

    async def MarkRead(self, request: pb.MarkReadRequest, context: aio.ServicerContext) -> pb.ReadStateReply:
        async def op() -> pb.ReadStateReply:
            # POST /v1/users/{user}/read: the user, then the body's model
            user = _user(request.user)
            body = models.parse(models.ReadRequest, {
                "seqs": list(request.seqs),
                "ranges": [[r.first, r.last] for r in request.ranges]})
            rs = await self.deps.router.mark_read(
                user, tuple(body.seqs), tuple((first, last) for first, last in body.ranges))
            return wire.read_state_to_pb(rs)

        return await self._run(context, op, request)  # type: ignore[no-any-return]

    async def ReadState(self, request: pb.UserRequest, context: aio.ServicerContext) -> pb.ReadStateReply:
        async def op() -> pb.ReadStateReply:
            return wire.read_state_to_pb(await self.deps.router.read_state(_user(request.user)))

        return await self._run(context, op, request)  # type: ignore[no-any-return]

    async def Sessions(self, request: pb.UserRequest, context: aio.ServicerContext) -> pb.SessionsReply:
        async def op() -> pb.SessionsReply:
            found = await self.deps.router.sessions(_user(request.user))
            return pb.SessionsReply(sessions=[wire.session_to_pb(s) for s in found])

        return await self._run(context, op, request)  # type: ignore[no-any-return]

    async def RegisterDevice(self, request: pb.DeviceRequest, context: aio.ServicerContext) -> pb.Device:
        async def op() -> pb.Device:
            d = await self.deps.router.register_device(*_device(request))
            return wire.device_to_pb(d)

        return await self._run(context, op, request)  # type: ignore[no-any-return]

    async def RemoveDevice(self, request: pb.DeviceRequest,
                           context: aio.ServicerContext) -> pb.RemoveDeviceReply:
        async def op() -> pb.RemoveDeviceReply:
            removed = await self.deps.router.remove_device(*_device(request))
            return pb.RemoveDeviceReply(removed=removed)

        return await self._run(context, op, request)  # type: ignore[no-any-return]

    async def Devices(self, request: pb.UserRequest, context: aio.ServicerContext) -> pb.DevicesReply:
        async def op() -> pb.DevicesReply:
            found = await self.deps.router.devices(_user(request.user))
            return pb.DevicesReply(devices=[wire.device_to_pb(d) for d in found])

        return await self._run(context, op, request)  # type: ignore[no-any-return]

    async def Status(self, request: pb.StatusRequest,
                     context: aio.ServicerContext) -> pb.StatusReply:
        async def op() -> pb.StatusReply:
            m = self.deps.metrics
            now = time.monotonic()
            reply = pb.StatusReply(router=pb.NodeStats(
                id=self.deps.node_id, kind="router", version=VERSION, started_at=m.started_at,
                stats=m.snapshot()))
            for stream in list(self.deps.hubs.hubs.values()):
                hub = pb.NodeStats(id=stream.hub_id, kind="hub", age_s=now - stream.last_rx)
                if stream.stats is not None:
                    hub.MergeFrom(stream.stats)
                    hub.id, hub.kind = stream.hub_id, "hub"
                reply.hubs.append(hub)
            return reply

        return await self._run(context, op, request)  # type: ignore[no-any-return]

    async def GetReport(self, request: pb.ReportRequest, context: aio.ServicerContext) -> pb.Report:
        async def op() -> pb.Report:
            return wire.report_to_pb(await self.deps.router.report(request.report))

        return await self._run(context, op, request)  # type: ignore[no-any-return]

    async def ListReports(self, request: pb.ListReportsRequest,
                          context: aio.ServicerContext) -> pb.ReportsReply:
        async def op() -> pb.ReportsReply:
            limit = _bounded(request.limit or DEFAULT_REPORTS, "limit", 1, MAX_REPORTS_LIMIT)
            found = await self.deps.router.latest_reports(limit)
            return pb.ReportsReply(reports=[wire.report_to_pb(r) for r in found])

        return await self._run(context, op, request)  # type: ignore[no-any-return]

    async def GetReportUser(self, request: pb.ReportUserRequest,
                            context: aio.ServicerContext) -> pb.ReportUser:
        async def op() -> pb.ReportUser:
            return wire.report_user_to_pb(
                await self.deps.router.report_user(request.report, request.user))

        return await self._run(context, op, request)  # type: ignore[no-any-return]


def _user(user: str) -> str:
    return check_id(user, "user")


def _bounded(value: int, name: str, minimum: int, maximum: int) -> int:
    """``value`` in ``minimum..maximum``, refused as the HTTP API refuses its query
    parameter ``name`` (:func:`pushgate.hub.api.query_int`): same message, same field."""
    if not minimum <= value <= maximum:
        raise InvalidRequest(f"'{name}' must be between {minimum} and {maximum}", field=name)
    return value


def _device(request: pb.DeviceRequest) -> tuple[str, str, str, str]:
    """``(user, app, platform, token)`` of a device call, checked as ``PUT`` / ``DELETE
    /v1/users/{user}/devices`` checks them: the user, then the body's model (``app``
    not set: ``default``, as a body without it; set to ``""``: refused like
    ``"app": ""``); the store's limits follow in the routing core."""
    user = _user(request.user)
    fields = {"platform": request.platform, "token": request.token}
    if request.HasField("app"):
        fields["app"] = request.app
    body = models.parse(models.DeviceBody, fields)
    return user, body.app or DEFAULT_APP, body.platform, body.token


class HubLinkService(pb_grpc.HubLinkServicer):
    """The router's end of every HubLink, whichever its transport: gRPC's ``Link`` stream
    here, the framed connections of :mod:`pushgate.router.framedlink`; both run
    :meth:`run_link` once the hub's first ``Hello`` is in."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._tasks: set[asyncio.Task[None]] = set()

    async def Transport(self, request: pb.TransportRequest,
                        context: aio.ServicerContext) -> pb.TransportReply:
        try:
            self.deps.check_auth(context)
        except Unauthorized as e:
            await _abort(context, e)
        return pb.TransportReply(framed_port=self.deps.framed_port)

    async def Link(self, request_iterator: Any, context: aio.ServicerContext) -> None:
        deps = self.deps
        try:
            deps.check_auth(context)
        except Unauthorized as e:
            await _abort(context, e)
        first = await context.read()
        if first is aio.EOF or first.WhichOneof("kind") != "hello":
            await _abort(context, Internal("a HubLink stream starts with Hello"))

        async def read_all(handle: Callable[[pb.HubMessage], None]) -> None:
            with contextlib.suppress(aio.AioRpcError):
                while (msg := await context.read()) is not aio.EOF:
                    handle(msg)

        async def write_all(stream: HubStream) -> None:
            while (msg := await stream.queue.get()) is not None:
                await context.write(msg)
                stream.queue.task_done()  # (LinkedHubs.sent waits on it)

        await self.run_link(first.hello, read_all, write_all=write_all, transport="grpc")

    async def run_link(self, hello: pb.Hello,
                       read_all: Callable[[Callable[[pb.HubMessage], None]], Coroutine[Any, Any, None]],
                       *, write: Callable[[pb.RouterMessage], None] | None = None,
                       write_all: Callable[[HubStream], Coroutine[Any, Any, None]] | None = None,
                       transport: str) -> None:
        """One hub's link after its ``Hello``: ``read_all(handle)`` passes each message
        of the hub to ``handle`` until the hub ends the link; messages to the hub go to
        ``write`` at once, or wait in the stream's queue for ``write_all``. Returns when
        the hub ended the link or this router did (the stream is closed: a newer link of
        the hub, a silent hub, the drain), even while a write to a stopped hub is stuck.

        What waits on Redis (Hello, Online, Offline) is done by a task of this link
        (:meth:`_directory_worker`: in order per session, sessions side by side), so the
        reader keeps reading (the heartbeats that keep the link up arrive) while Redis is
        slow or stopped."""
        deps = self.deps
        hub = hello.hub_id
        stream = deps.hubs.attach(hub, write)
        stream.match_only = hello.match_only
        stream.send(pb.RouterMessage(heartbeat=pb.Heartbeat()))  # the hub counts us up now
        deps.hubs.release_held(stream)  # what other hubs routed to it before it linked
        log.info("hub linked", hub=hub, sessions=len(hello.sessions), transport=transport)
        # (arrival time, message): an Online's deadline counts from its arrival
        directory_work: asyncio.Queue[tuple[float, pb.HubMessage]] = asyncio.Queue()
        directory_work.put_nowait((time.monotonic(), pb.HubMessage(hello=hello)))
        directory_kinds = ("hello", "online", "offline")

        def handle(msg: pb.HubMessage) -> None:
            stream.last_rx = now = time.monotonic()
            if msg.WhichOneof("kind") in directory_kinds:
                directory_work.put_nowait((now, msg))
            else:
                self._handle(stream, msg)

        tasks = [asyncio.create_task(read_all(handle)), asyncio.create_task(stream.ended.wait())]
        if write_all is not None:
            tasks.append(asyncio.create_task(write_all(stream)))
        worker = asyncio.create_task(self._directory_worker(stream, directory_work))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass
        finally:
            deps.hubs.detach(stream)
            for t in (*tasks, worker):
                t.cancel()
            # bounded: a task that swallowed its cancel must not hold the link (or the
            # router's stop) forever
            done, _ = await asyncio.wait([*tasks, worker], timeout=LINK_END_S)
            for t in done:  # retrieved: their errors ended the link, nothing to log twice
                if not t.cancelled():
                    t.exception()
            log.info("hub unlinked", hub=hub)

    async def _directory_worker(
            self, stream: HubStream,
            work: asyncio.Queue[tuple[float, pb.HubMessage]]) -> None:
        """The link's directory messages: a ``Hello`` (a re-sync) after everything before
        it and before everything after it; ``Online`` / ``Offline`` concurrently across
        sessions (at most :data:`DIRECTORY_CONCURRENCY`), in order per session (an
        ``Offline`` never overtakes its ``Online``). While Redis does not answer, every
        session waiting then fails at the directory's own deadline, not one deadline
        after another, and an ``Online`` is answered within :data:`ONLINE_DEADLINE_S` of
        its arrival even when it waits behind a re-sync (refused, nothing recorded)."""
        running: dict[str, asyncio.Task[None]] = {}  # session id -> its latest message
        slots = asyncio.Semaphore(DIRECTORY_CONCURRENCY)
        resync: asyncio.Task[None] | None = None  # the latest Hello: later ones wait for it

        def finished(sid: str, task: asyncio.Task[None]) -> None:
            if running.get(sid) is task:
                del running[sid]

        me = asyncio.current_task()
        assert me is not None
        try:
            while True:
                if me.cancelling():  # a cancel a Redis call swallowed (3.11's timeout)
                    raise asyncio.CancelledError
                arrived, msg = await work.get()
                kind = msg.WhichOneof("kind")
                if kind == "hello":
                    before = [t for t in (*running.values(), resync) if t is not None]
                    resync = asyncio.create_task(self._directory_after(
                        stream, msg, before, None, None))
                    continue
                sid = (msg.online.session.session_id if kind == "online"
                       else msg.offline.session_id)
                await slots.acquire()
                before = [t for t in (running.get(sid), resync)
                          if t is not None and not t.done()]
                # behind a re-sync, an Online has its own deadline (counted from its
                # arrival); otherwise the directory's per-call deadline is the bound
                deadline = (arrived + ONLINE_DEADLINE_S
                            if kind == "online" and resync in before else None)
                task = asyncio.create_task(
                    self._directory_after(stream, msg, before, slots, deadline))
                running[sid] = task
                task.add_done_callback(functools.partial(finished, sid))
        finally:
            for task in (*running.values(), *([resync] if resync is not None else [])):
                task.cancel()

    async def _directory_after(self, stream: HubStream, msg: pb.HubMessage,
                               before: list[asyncio.Task[None]],
                               slot: asyncio.Semaphore | None, deadline: float | None) -> None:
        """``msg`` once ``before`` (the same session's previous message, a re-sync in
        progress) are done; an ``Online`` with a ``deadline`` that it would wait past is
        refused."""
        try:
            if before:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                _, late = await asyncio.wait(before, timeout=left)
                if late:
                    self._online_refused(stream, msg, "a hub re-sync is still waiting for it")
                    return
            await self._directory_logged(stream, msg, deadline)
        finally:
            if slot is not None:
                slot.release()

    def _online_refused(self, stream: HubStream, msg: pb.HubMessage, why: str) -> None:
        error = Overloaded(f"session directory unavailable: {why} (no answer within "
                           f"{ONLINE_DEADLINE_S:g} s)", code="directory_unavailable")
        done = pb.OnlineDone(rid=msg.online.rid)
        done.error.CopyFrom(wire.error_to_pb(error))
        stream.send(pb.RouterMessage(online_done=done))

    async def _directory_logged(self, stream: HubStream, msg: pb.HubMessage,
                                deadline: float | None) -> None:
        try:
            await self._directory(stream, msg, deadline)
        except Exception:
            log.exception("hub message failed", hub=stream.hub_id)

    async def drained(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until the sends in flight are answered."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)

    async def _send(self, stream: HubStream, m: pb.SendRequest) -> None:
        try:
            req = wire.send_from_hub(m, self.deps.send_limits)
            reply = wire.result_to_pb(await self.deps.router.send(req), m.tag)
        except PushgateError as e:  # (counted by the hub, which answers its client)
            reply = pb.SendReply(tag=m.tag, error=wire.error_to_pb(e))
        except Exception as e:
            log.exception("send failed")
            reply = pb.SendReply(tag=m.tag, error=wire.error_to_pb(
                Internal(f"internal error: {type(e).__name__}")))
        self.deps.hubs.reply(stream, reply)

    async def _hello(self, stream: HubStream, hello: pb.Hello) -> None:
        sessions = [wire.session_from_pb(s) for s in hello.sessions]
        try:
            added, removed = await self.deps.directory.sync_hub(
                stream.hub_id, sessions, hello.snapshot_at)
            kicked = await self.deps.router.enforce_quota({s.user for s in sessions}) \
                if added else 0
            if added or removed:
                log.info("hub re-synced", hub=stream.hub_id, added=added, removed=removed,
                         kicked=kicked)
        except DirectoryUnavailable as e:
            log.warning("hub re-sync failed; asking again later", hub=stream.hub_id, error=str(e))
            stream.resync_later()

    async def _directory(self, stream: HubStream, msg: pb.HubMessage,
                         deadline: float | None) -> None:
        kind = msg.WhichOneof("kind")
        if kind == "online":
            done = pb.OnlineDone(rid=msg.online.rid)
            try:
                async with asyncio.timeout(None if deadline is None
                                           else max(0.0, deadline - time.monotonic())):
                    kicked = await self.deps.router.connect(
                        wire.session_from_pb(msg.online.session))
                done.kicked = len(kicked)
            except PushgateError as e:
                done.error.CopyFrom(wire.error_to_pb(e))
                if e.code == "directory_unavailable":
                    stream.resync_later()  # the add left behind may still land
            except TimeoutError:
                self._online_refused(stream, msg, "redis")
                stream.resync_later()
                return
            stream.send(pb.RouterMessage(online_done=done))
        elif kind == "offline":
            info = msg.offline
            try:
                await self.deps.directory.remove(info.user, info.session_id, stream.hub_id)
            except DirectoryUnavailable as e:  # a ghost until the hub's re-sync drops it
                log.warning("session removal failed; hub asked to re-sync", error=str(e))
                stream.resync_later()
        elif kind == "hello":
            await self._hello(stream, msg.hello)

    def _handle(self, stream: HubStream, msg: pb.HubMessage) -> None:
        kind = msg.WhichOneof("kind")
        if kind == "acks":
            router = self.deps.router
            for a in msg.acks.acks:
                router.on_ack(Identity(a.user, device=a.device), a.session_id, a.seq)
        elif kind == "sends":
            for m in msg.sends.items:
                t = asyncio.create_task(self._send(stream, m))
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)
        elif kind == "broadcast_done":
            self.deps.hubs.broadcast_done(msg.broadcast_done)
        elif kind == "left":
            stream.left.set()
        elif kind == "heartbeat" and msg.heartbeat.HasField("stats"):
            stream.stats = msg.heartbeat.stats  # for Status (last_rx already updated)
