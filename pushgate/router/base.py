"""The routing core's two seams, and the result of a send.

:class:`RoutingCore` is what a hub calls: the sessions it holds, sends, inbox reads and
read marks, devices. Two implementations, held to this one protocol by mypy:

* :class:`pushgate.router.core.Router` — in the same process (embedded mode; and
  inside every ``pushgate router`` process, behind its gRPC servicers);
* :class:`pushgate.hub.remote.RemoteRouter` — a cluster hub's view of the routers,
  over gRPC (the ``Gateway`` service and the ``HubLink`` streams).

``tests/contract/test_routing_core.py`` runs the same cases against both.

:class:`Hubs` is the other direction: how the routing core reaches the hubs that hold
sessions. :class:`pushgate.hub.registry.LocalHubs` is the hub in the same process
(embedded); :class:`pushgate.router.hubs.LinkedHubs` is every hub linked to a router
process by its ``HubLink`` stream (cluster).

Errors are :class:`pushgate.errors.PushgateError` on both sides: ``Overloaded``
(``store_unavailable``, ``directory_unavailable``, ``router_unavailable``; retryable),
``InvalidRequest``, ``NotFound`` (``unknown_user``: no inbox yet), ``AckTimeout``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pushgate.auth import Identity
from pushgate.router.directory.quota import SessionInfo
from pushgate.router.requests import SendRequest
from pushgate.router.routing import Filter
from pushgate.store.base import Device, Event, ReadState, Report, ReportUser

MAX_REPORTS_LIMIT = 1000  # latest_reports(limit): 1..this


@dataclass(slots=True)
class UserResult:
    user: str
    seq: int | None
    sessions: int
    duplicate: bool = False
    acked_by: str | None = None
    push: str | None = None  # "queued" / "not_queued" when the send had a push block

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"user": self.user, "seq": self.seq, "sessions": self.sessions}
        if self.push is not None:
            out["push"] = self.push
        if self.duplicate:
            out["duplicate"] = True
        if self.acked_by is not None:
            out["acked_by"] = self.acked_by
        return out


@dataclass(slots=True)
class SendResult:
    results: list[UserResult] = field(default_factory=list)
    sessions: int = 0
    report: str | None = None  # the delivery report id (the send's id where given)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"results": [r.to_dict() for r in self.results],
                               "sessions": self.sessions}
        if self.report is not None:
            out["report"] = self.report
        return out


class RoutingCore(Protocol):
    """The routing core as a hub sees it (embedded: in-process; cluster: over gRPC)."""

    # -- sessions --------------------------------------------------------------------------

    async def connect(self, info: SessionInfo) -> list[SessionInfo]:
        """Record a new session under the per-user quota. The sessions it pushes over the
        quota are kicked (their hubs get a kick order); the in-process core returns them,
        the remote one returns ``[]`` (their own hubs close them).
        Raises ``Overloaded`` when the directory or every router is unreachable."""
        ...

    async def disconnect(self, info: SessionInfo) -> None:
        """Forget a closed session (compare-and-delete: a newer record of the same id on
        another hub stays). Best effort: a hub's next re-sync repairs a lost removal."""
        ...

    async def sessions(self, user: str) -> list[SessionInfo]:
        """The user's live sessions in the whole deployment, oldest first."""
        ...

    def on_ack(self, identity: Identity, session_id: str, seq: int,
               from_store: bool = False) -> None:
        """A client acked ``seq``: completes a waiting send-with-ack, feeds the offline
        push policy. ``from_store``: the session got that seq read from the store
        (backlog, gap fill, fetch), not pushed by a router (in the cluster the ack then
        goes to every router: the send waiting for it may be on any). Never blocks, never
        raises."""
        ...

    # -- sends and inbox --------------------------------------------------------------------

    async def send(self, req: SendRequest, t0: float | None = None) -> SendResult:
        """Store (user-addressed, ttl > 0), then deliver to live sessions; ``t0``
        (``perf_counter``) starts the delivery-latency clock. A stored event is durable
        before any session sees it; frames of one user leave in seq order."""
        ...

    async def fetch(self, user: str, after: int, limit: int) -> tuple[list[Event], int, bool]:
        """Events after ``after`` (at most ``limit`` and ``fetch_max_bytes``, at least
        one), the head, and whether more remain. ``NotFound`` if the user has no inbox."""
        ...

    async def mark_read(self, user: str, seqs: Sequence[int],
                        ranges: Sequence[tuple[int, int]]) -> ReadState:
        """Mark stored, unexpired seqs read (others are ignored); the new read state."""
        ...

    async def read_state(self, user: str) -> ReadState:
        ...

    # -- devices (offline bridge) ------------------------------------------------------------

    async def register_device(self, user: str, app: str, platform: str, token: str) -> Device:
        """Store a push token for ``(user, app)`` (a known token moves to this user)."""
        ...

    async def remove_device(self, user: str, app: str, platform: str, token: str) -> bool:
        """Remove the token if it belongs to ``(user, app)``; whether it did."""
        ...

    async def devices(self, user: str) -> list[Device]:
        ...

    # -- delivery reports ----------------------------------------------------------------------

    async def report(self, report: str) -> Report:
        """A send's delivery report; ``NotFound`` (``unknown_report``) when there is none."""
        ...

    async def latest_reports(self, limit: int) -> list[Report]:
        """The ``limit`` newest reports, newest first."""
        ...

    async def report_user(self, report: str, user: str) -> ReportUser:
        """One user's status in a report; ``NotFound`` when the user has no stored event
        of it."""
        ...


class Hubs(Protocol):
    """How the routing core reaches the hubs. Calls are synchronous enqueues (batched on
    the ``HubLink`` stream in the cluster); each returns how many sessions took the
    frame. A hub that is gone takes nothing: stored events wait for a fetch."""

    def deliver(self, hub: str, session_ids: Sequence[str], frame: str, seq: int, t0: float,
                want_ack: bool = False) -> int: ...

    def kick(self, hub: str, session_id: str, by: str | None) -> None:
        """Close the session with ``kicked`` (quota), after the frames already routed to it."""
        ...

    async def broadcast(self, flt: Filter, frame: str, counter: int, t0: float) -> int:
        """Deliver to every session (of every hub) that ``flt`` matches; how many took it."""
        ...
