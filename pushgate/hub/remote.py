"""The routing core over gRPC: what a cluster hub's endpoints call (``node.router``).

:class:`RemoteRouter` implements :class:`pushgate.router.base.RoutingCore`, the same
protocol as the in-process :class:`pushgate.router.core.Router`, with the same errors:
sends travel batched on a linked router's HubLink stream (round-robin); fetches, read
marks, session lists and devices are ``Gateway`` calls (a read goes to another router
when one is unreachable); session announcements and acks travel on the stream. No
router linked → ``router_unavailable`` (503 / close 4003, retryable).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import grpc
from grpc import aio

from pushgate.auth import Identity
from pushgate.errors import Internal, InvalidRequest, Overloaded, PushgateError
from pushgate.hub.routers import Routers
from pushgate.router import wire
from pushgate.router.base import MAX_REPORTS_LIMIT, RoutingCore, SendResult
from pushgate.router.directory.quota import SessionInfo
from pushgate.router.requests import SendRequest
from pushgate.rpc import pushgate_pb2 as pb
from pushgate.store.base import Device, Event, ReadState, Report, ReportUser

CALL_TIMEOUT_S = 10.0
MIN_RETRY_S = 0.5  # a read is retried on another router only with this much time left


def _error(e: aio.AioRpcError, address: str) -> PushgateError:
    for key, value in e.trailing_metadata() or ():
        if key == wire.ERROR_TRAILER and isinstance(value, bytes):
            return wire.error_from_pb(pb.Error.FromString(value))
    if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.CANCELLED):
        return Overloaded(f"router {address} unavailable ({e.code().name}); retry",
                          code="router_unavailable")
    return Internal(f"router {address}: {e.code().name} {e.details()}")


class RemoteRouter(RoutingCore):
    """The routing core, reached over gRPC (cluster mode)."""

    def __init__(self, routers: Routers) -> None:
        self.routers = routers

    async def _call(self, method: str, request: Any, deadline_s: float | None = None,
                    idempotent: bool = True) -> Any:
        tried: set[str] = set()
        loop = asyncio.get_running_loop()
        # one deadline for the call, retries included
        end = loop.time() + (CALL_TIMEOUT_S if deadline_s is None else deadline_s)
        while True:
            conn = self.routers.pick()
            if conn.address in tried:
                conn = next((c for c in self.routers.conns if c.up and c.address not in tried), conn)
            try:
                return await getattr(conn.gateway, method)(
                    request, metadata=self.routers.metadata, timeout=end - loop.time())
            except aio.AioRpcError as e:
                err = _error(e, conn.address)
                tried.add(conn.address)
                # a read may go to another router (one that failed fast: a router that
                # ran out of the deadline took it all); a send is not retried (it may have
                # been stored): the caller gets a retryable error and retries with its id
                if not (idempotent and err.code == "router_unavailable"
                        and e.code() != grpc.StatusCode.DEADLINE_EXCEEDED
                        and end - loop.time() > MIN_RETRY_S
                        and any(c.up and c.address not in tried for c in self.routers.conns)):
                    raise err from None

    # -- sessions ----------------------------------------------------------------------------

    async def connect(self, info: SessionInfo) -> list[SessionInfo]:
        conn = self.routers.primary()
        try:
            done = await conn.online(info, self.routers.next_rid())
        except TimeoutError:
            raise Overloaded("router did not record the session in time; reconnect",
                             code="router_unavailable") from None
        if done.HasField("error"):
            raise wire.error_from_pb(done.error)
        return []  # kicked sessions are closed by their own hubs

    async def disconnect(self, info: SessionInfo) -> None:
        self.routers.forget_session(info.session_id)
        with contextlib.suppress(PushgateError):  # no router: the next Hello drops it
            self.routers.primary().send(pb.HubMessage(offline=pb.Offline(
                user=info.user, session_id=info.session_id)))

    async def sessions(self, user: str) -> list[SessionInfo]:
        reply = await self._call("Sessions", pb.UserRequest(user=user))
        return [wire.session_from_pb(s) for s in reply.sessions]

    def on_ack(self, identity: Identity, session_id: str, seq: int,
               from_store: bool = False) -> None:
        """To the routers that pushed ``seq`` to the session asking for its ack (two, when
        a retried ack-send's copies came through both); to every router when the
        session got it from the store (a send waiting for it may be on any of them,
        kept in that router's memory); else to the primary (reports, push policy)."""
        routes = self.routers.ack_routes.pop((session_id, seq), None)
        ack = pb.Ack(user=identity.user, device=identity.device, session_id=session_id,
                     seq=seq)
        if from_store:  # (and to a router that links later: Routers.store_acks)
            routes = [c for c in self.routers.conns if c.up]
            self.routers.store_acks.append((time.monotonic(), ack))
        elif routes is None:
            try:
                routes = [self.routers.primary()]
            except PushgateError:
                return
        for conn in routes:
            conn.ack(ack)

    # -- sends and inbox ---------------------------------------------------------------------

    async def send(self, req: SendRequest, t0: float | None = None) -> SendResult:
        deadline = CALL_TIMEOUT_S + (req.ack_timeout_ms / 1000 if req.ack else 0)
        # a transient send to one account or user goes to the router its target names, on
        # every hub: the transient sends to one target then leave from one router, in the
        # order they came (they have no seq to be put in order by); stored sends spread
        target = None if req.stored else (
            req.filter.target.account if req.filter is not None
            else req.users[0] if len(req.users) == 1 else None)
        conn = self.routers.pick() if target is None else self.routers.pick_for(target)
        reply = await conn.request_send(
            wire.send_to_pb(req, self.routers.next_rid()), deadline)
        if reply.HasField("error"):
            raise wire.error_from_pb(reply.error)
        return wire.result_from_pb(reply)

    async def fetch(self, user: str, after: int, limit: int) -> tuple[list[Event], int, bool]:
        reply = await self._call("FetchEvents", pb.FetchRequest(user=user, after=after, limit=limit))
        return [wire.event_from_pb(user, e) for e in reply.events], reply.head, reply.more

    async def mark_read(self, user: str, seqs: Sequence[int],
                        ranges: Sequence[tuple[int, int]]) -> ReadState:
        reply = await self._call("MarkRead", pb.MarkReadRequest(
            user=user, seqs=seqs, ranges=[pb.Range(first=a, last=b) for a, b in ranges]),
            idempotent=True)
        return wire.read_state_from_pb(reply)

    async def read_state(self, user: str) -> ReadState:
        return wire.read_state_from_pb(await self._call("ReadState", pb.UserRequest(user=user)))

    # -- devices (offline bridge) --------------------------------------------------------

    async def register_device(self, user: str, app: str, platform: str, token: str) -> Device:
        return wire.device_from_pb(await self._call("RegisterDevice", pb.DeviceRequest(
            user=user, app=app, platform=platform, token=token)))

    async def remove_device(self, user: str, app: str, platform: str, token: str) -> bool:
        reply = await self._call("RemoveDevice", pb.DeviceRequest(
            user=user, app=app, platform=platform, token=token))
        return bool(reply.removed)

    async def devices(self, user: str) -> list[Device]:
        reply = await self._call("Devices", pb.UserRequest(user=user))
        return [wire.device_from_pb(d) for d in reply.devices]

    # -- delivery reports ----------------------------------------------------------------

    async def report(self, report: str) -> Report:
        return wire.report_from_pb(await self._call("GetReport", pb.ReportRequest(report=report)))

    async def latest_reports(self, limit: int) -> list[Report]:
        if not 1 <= limit <= MAX_REPORTS_LIMIT:  # on the wire 0 means the default
            raise InvalidRequest(f"'limit' must be an integer in 1..{MAX_REPORTS_LIMIT}",
                                 field="limit")
        reply = await self._call("ListReports", pb.ListReportsRequest(limit=limit))
        return [wire.report_from_pb(r) for r in reply.reports]

    async def report_user(self, report: str, user: str) -> ReportUser:
        return wire.report_user_from_pb(await self._call(
            "GetReportUser", pb.ReportUserRequest(report=report, user=user)))
