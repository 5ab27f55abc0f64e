"""The routing core, shared by embedded mode and the cluster router.

``send`` persists user-addressed events (store-then-push), resolves the users' live
sessions in the directory and hands pre-encoded frames to the hubs through
:class:`~pushgate.router.base.Hubs`. Frames for one user leave in seq order: delivery
happens right after the group commit resolves, with no await in between.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pushgate.auth import Identity, check_id
from pushgate.errors import AckTimeout, InvalidRequest, NotFound, Overloaded, ShuttingDown
from pushgate.logs import get_logger
from pushgate.protocol import encode_event, event_frame, is_client_key
from pushgate.router.base import MAX_REPORTS_LIMIT, Hubs, RoutingCore, SendResult, UserResult
from pushgate.router.bridge.outbox import OfflinePush, OfflineSink
from pushgate.router.directory.base import Directory, DirectoryUnavailable
from pushgate.router.directory.memory import MemoryDirectory
from pushgate.router.directory.quota import SessionInfo
from pushgate.router.reports import Reports, new_report_id
from pushgate.router.requests import SendRequest
from pushgate.router.routing import Filter, select
from pushgate.store.base import (
    DELIVERED,
    Appended,
    Device,
    DeviceStore,
    Event,
    EventStore,
    NewEvent,
    ReadState,
    Report,
    ReportStore,
    ReportUser,
    StoreError,
    StoreOverloaded,
    check_device,
)

log = get_logger("pushgate.router")
# filters whose find_any position is kept (the least recently used is forgotten: it
# starts again from the first matching session)
ANY_COUNTERS_MAX = 10_000


class StoreCall:
    """``async with StoreCall(deadline_s):`` a store call whose failures reach clients as
    503 / close 4003 ``store_unavailable`` (retryable), never as a 500, and whose argument
    checks (``ValueError``) as ``invalid_request``. With a deadline (the cluster's
    routers: under the hubs' own call deadline), a store that does not answer within it
    is ``store_unavailable`` too, not the hub's ``router_unavailable`` a moment later. A
    send's events still waiting for their commit are dropped then (nothing stored);
    those of a commit in progress may be stored (a retry with the same ``id`` tells)."""

    __slots__ = ("_timeout", "deadline_s")

    def __init__(self, deadline_s: float | None) -> None:
        self.deadline_s = deadline_s
        self._timeout: asyncio.Timeout | None = None

    async def __aenter__(self) -> None:
        if self.deadline_s is not None:
            self._timeout = asyncio.timeout(self.deadline_s)
            await self._timeout.__aenter__()

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: Any) -> None:
        if self._timeout is not None:
            try:
                await self._timeout.__aexit__(et, e, tb)
            except TimeoutError as te:
                raise Overloaded(
                    f"event store unavailable: no answer within {self.deadline_s:g} s; "
                    "retry (a send with the same 'id': it is stored once)",
                    code="store_unavailable") from te
        if isinstance(e, StoreOverloaded):  # commit_max_pending: nothing was queued
            raise Overloaded(f"too many writes queued: {e}; retry shortly") from e
        if isinstance(e, StoreError):
            raise Overloaded(f"event store unavailable: {e}", code="store_unavailable") from e
        if isinstance(e, ValueError):  # the store's own argument checks
            raise InvalidRequest(str(e)) from e


class Committer(Protocol):
    async def append(self, events: Sequence[NewEvent],
                     late: Callable[[list[Appended]], None] | None = None) -> list[Appended]: ...


class Metrics(Protocol):
    def sent(self, kind: str, n: int) -> None: ...
    def delivered(self, n: int) -> None: ...
    def kicked(self, n: int) -> None: ...


@dataclass(frozen=True, slots=True)
class RouterConfig:
    max_sessions_per_user: int
    inline_event_max_bytes: int
    fetch_max_bytes: int = 1 << 20
    report_ttl_s: int = 30 * 86400  # reports of transient sends (no events) live this long
    store_deadline_s: float | None = None  # see StoreCall (None: the store's own timeouts)


class _AckWaiter:
    __slots__ = ("device", "future")

    def __init__(self, device: str | None) -> None:
        self.device = device
        self.future: asyncio.Future[str] = asyncio.get_running_loop().create_future()


class Router(RoutingCore):
    """The routing core in this process (see :class:`RoutingCore` for the contract)."""

    def __init__(self, store: EventStore, committer: Committer, directory: Directory,
                 hubs: Hubs, config: RouterConfig, metrics: Metrics,
                 offline: OfflineSink | None = None, reports: Reports | None = None) -> None:
        self.store = store
        self.committer = committer
        self.directory = directory
        self.hubs = hubs
        self.config = config
        self.metrics = metrics
        self.offline = offline  # the offline bridge's queue (None = no APNs/FCM)
        self.reports = reports if reports is not None else _NoReports()
        self._local_directory = directory if isinstance(directory, MemoryDirectory) else None
        self._ack_waiters: dict[tuple[str, int], list[_AckWaiter]] = defaultdict(list)
        # find_any's round-robin position per filter, the ANY_COUNTERS_MAX used last
        self._any_counters: dict[tuple[object, ...], int] = {}
        # a user's deliveries leave in commit order even when directory lookups await
        # (Redis): a stored send waits for the delivery of the previous send to each of
        # its users before its own. Per user: one chain for all made a lookup stuck on a
        # stalled Redis Cluster master hold up every send (3 s, DEADLINE_S)
        self._last_delivery: dict[str, asyncio.Future[None]] = {}
        self._late_tasks: set[asyncio.Task[None]] = set()  # sends committed past their deadline

    # -- sessions ------------------------------------------------------------------------

    async def connect(self, info: SessionInfo) -> list[SessionInfo]:
        """Record a new session; kick (and return) the sessions it pushes over quota."""
        try:
            kicked = await self.directory.add(info, self.config.max_sessions_per_user)
        except DirectoryUnavailable as e:
            raise Overloaded(f"session directory unavailable: {e}",
                             code="directory_unavailable") from e
        for old in kicked:
            self.hubs.kick(old.hub, old.session_id, info.session_id)
        if kicked:
            self.metrics.kicked(len(kicked))
        return kicked

    async def enforce_quota(self, users: Iterable[str]) -> int:
        """After a hub re-sync: kick the sessions the re-recorded ones push over the
        quota (:meth:`Directory.enforce_quota`); how many."""
        kicked = await self.directory.enforce_quota(users, self.config.max_sessions_per_user)
        for old, by in kicked:
            self.hubs.kick(old.hub, old.session_id, by)
        if kicked:
            self.metrics.kicked(len(kicked))
        return len(kicked)

    async def disconnect(self, info: SessionInfo) -> None:
        await self.directory.remove(info.user, info.session_id, info.hub)

    async def sessions(self, user: str) -> list[SessionInfo]:
        try:
            return (await self.directory.sessions([user])).get(user, [])
        except DirectoryUnavailable as e:
            raise Overloaded(f"session directory unavailable: {e}",
                             code="directory_unavailable") from e

    async def _live_after_commit(self, users: Sequence[str]) -> dict[str, list[SessionInfo]]:
        """Live sessions for events already committed: a directory outage must not turn
        an accepted send into an error (the events are stored; clients fetch them)."""
        try:  # (on a cluster, the users on a node that does not answer are left out)
            return await self.directory.sessions(users, partial=True)
        except DirectoryUnavailable as e:
            log.warning("directory unavailable; stored events wait for a fetch", error=str(e))
            return {}

    def on_ack(self, identity: Identity, session_id: str, seq: int,
               from_store: bool = False) -> None:
        self.reports.acked_event(identity.user, seq)
        if self.offline is not None:
            self.offline.on_ack(identity.user, seq)
        waiters = self._ack_waiters.get((identity.user, seq))
        if not waiters:
            return
        for w in waiters:
            if (w.device is None or w.device == identity.device) and not w.future.done():
                w.future.set_result(session_id)

    # -- sends ---------------------------------------------------------------------------

    def _deliver(self, sessions: Sequence[SessionInfo], frame: str, seq: int, t0: float,
                 device: str | None, want_ack: bool = False) -> int:
        """Hand ``frame`` to the hubs of ``sessions`` (of ``device`` only, when given).
        A stored event for one device reaches the user's other sessions as a *skip* (an
        empty frame with the seq): it moves their seq on, so that they do not wait for
        it as a gap (docs/protocol.md, order)."""
        if len(sessions) <= 1 and device is None:  # the common case: no grouping
            if not sessions:
                return 0
            s = sessions[0]
            return self.hubs.deliver(s.hub, [s.session_id], frame, seq, t0, want_ack)
        by_hub: dict[str, list[str]] = {}
        skips: dict[str, list[str]] = {}
        for s in sessions:
            if device is None or s.device == device:
                by_hub.setdefault(s.hub, []).append(s.session_id)
            elif seq:
                skips.setdefault(s.hub, []).append(s.session_id)
        for hub, ids in skips.items():
            self.hubs.deliver(hub, ids, "", seq, t0)
        return sum(self.hubs.deliver(hub, ids, frame, seq, t0, want_ack)
                   for hub, ids in by_hub.items())

    async def _deliver_stored(self, req: SendRequest, report: str, pre: Collection[str],
                              appended: list[Appended], t0: float, result: SendResult, *,
                              wait_ack: bool) -> tuple[dict[str, list[SessionInfo]], Any]:
        """Deliver a send's newly stored events to the live sessions (after the previous
        send's delivery: frames leave in commit order), count them in its report and in
        ``result``; returns the sessions looked up and, with ``wait_ack``, the ack waiter
        (made before the frames leave)."""
        reports = self.reports
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        last = self._last_delivery
        before: set[asyncio.Future[None]] = set()
        for user in req.users:
            prev = last.get(user)
            if prev is not None and not prev.done():
                before.add(prev)
            last[user] = mine
        before.discard(mine)
        try:
            live = await self._live_after_commit(req.users)
            for prev in before:
                await prev
            waiter = self._add_waiter(req, appended[0].seq) if wait_ack else None
            stored = delivered = 0
            inline_max = self.config.inline_event_max_bytes
            for a in appended:
                n = 0
                if not a.duplicate:
                    stored += 1
                    frame = event_frame(a.seq, a.id, req.body, a.created_at, inline_max)
                    n = self._deliver(live.get(a.user, ()), frame, a.seq, t0, req.device,
                                      req.ack)
                    if n:
                        delivered += 1
                    if (n > 0) is not (a.user in pre):
                        reports.delivered_event(a.user, a.seq, n > 0)  # mark != fact
                result.results.append(UserResult(a.user, a.seq, n, a.duplicate))
                result.sessions += n
            # the report lives as long as its events: a duplicate's is the stored one's
            reports.sent(report, len(appended), stored, len(appended) - stored, delivered,
                         max(a.expires_at for a in appended))
        finally:
            mine.set_result(None)
            for user in req.users:
                if last.get(user) is mine:
                    del last[user]
        return live, waiter

    async def _finish_late(self, req: SendRequest, report: str, pre: Collection[str],
                           appended: list[Appended], t0: float) -> None:
        """A send whose batch committed after its caller was answered
        ``store_unavailable`` (the store deadline passed during the commit): its events
        are stored, so they are delivered, counted and pushed as the send would have
        (a retry with the same id finds them as duplicates, which are neither)."""
        result = SendResult(report=report)
        try:
            await self._deliver_stored(req, report, pre, appended, t0, result, wait_ack=False)
            if self.offline is not None and req.push is not None:
                await self._queue_pushes(self.offline, req.push, result, report)
        except Exception:  # nothing to answer: logged
            log.exception("delivering a send committed after its store deadline failed",
                          report=report)
            return
        stored = sum(1 for a in appended if not a.duplicate)
        if not stored:  # a retry on another router, or an earlier commit, stored them
            log.info("a send whose caller stopped waiting found its events stored already",
                     report=report, duplicates=len(appended))
            return
        self.metrics.sent("stored", stored)
        self.metrics.delivered(result.sessions)
        log.warning("a send committed after its caller stopped waiting (the store deadline "
                    "answered it store_unavailable, or its connection closed) was delivered "
                    "and counted", report=report, events=stored,
                    duplicates=len(appended) - stored, sessions=result.sessions)

    async def send(self, req: SendRequest, t0: float | None = None) -> SendResult:
        """Store (when user-addressed with ttl > 0), then deliver to live sessions.

        Raises :class:`Overloaded` when the store refuses (retryable; nothing stored)
        and :class:`AckTimeout` for an ``ack`` send nobody acked (the event stays stored).
        """
        t0 = time.perf_counter() if t0 is None else t0
        if req.ack and not req.stored:
            raise InvalidRequest("a send with 'ack' is stored: it needs ttl > 0", field="ttl")
        # a send's id names its report; a client's send has a report of its own (its id
        # is scoped to the sender: the business server's reports stay the server's)
        report = req.id if req.id and not is_client_key(req.id) else new_report_id()
        if req.filter is not None:
            return await self._send_filter(req, req.filter, t0, report)
        now = time.time()
        result = SendResult(report=report)
        reports = self.reports
        expired_ack = False  # an ack send's retry whose event expired meanwhile
        if req.stored:
            # a memory directory answers at once: look the sessions up before storing too,
            # so that the event rows are written with their DELIVERED mark (the flush
            # corrects the few that a session opening or closing meanwhile changed)
            local, device = self._local_directory, req.device
            pre = {u for u in req.users if local.reaches(u, device)} if local else ()
            def late(appended: list[Appended]) -> None:
                # the deadline answered store_unavailable while the batch was committing:
                # the events are stored, so deliver, count and push them as the send would
                task = asyncio.get_running_loop().create_task(
                    self._finish_late(req, report, pre, appended, t0))
                self._late_tasks.add(task)
                task.add_done_callback(self._late_tasks.discard)

            async with StoreCall(self.config.store_deadline_s):
                appended = await self.committer.append(
                    [NewEvent(u, req.body, req.ttl_s, req.id, report,
                              DELIVERED if u in pre else 0) for u in req.users], late)
            live, waiter = await self._deliver_stored(req, report, pre, appended, t0, result,
                                                      wait_ack=req.ack)
            if req.ack:  # a retried ack-send is re-delivered (as stored) to be acked
                redelivered = 0
                for r, a in zip(result.results, appended, strict=True):
                    if a.duplicate:
                        again = await self._stored_frame(a.user, a.seq)
                        if again is None:  # expired (its id still known until the cleanup)
                            expired_ack = True
                        else:
                            r.sessions = self._deliver(live.get(a.user, ()), again, a.seq, t0,
                                                       req.device, True)
                            result.sessions += r.sessions
                            if r.sessions:  # this send handed it to a live session
                                redelivered += 1
                                reports.delivered_event(a.user, a.seq, True)
                if redelivered:
                    reports.sent(report, 0, 0, 0, redelivered,
                                 max(a.expires_at for a in appended))
            if self.offline is not None and req.push is not None:
                await self._queue_pushes(self.offline, req.push, result, report)
            self.metrics.sent("stored", len(appended))  # duplicates included (accepted)
        else:
            live = await self.sessions_of(req.users)
            frame = encode_event(None, req.id, req.body, now)
            waiter = None
            delivered = 0
            for u in req.users:
                n = self._deliver(live.get(u, ()), frame, 0, t0, req.device)
                result.results.append(UserResult(u, None, n))
                result.sessions += n
                delivered += n > 0
            reports.sent(report, len(req.users), 0, 0, delivered,
                         now + self.config.report_ttl_s)
            self.metrics.sent("transient", len(req.users))
        self.metrics.delivered(result.sessions)
        if waiter is not None:
            await self._wait_ack(req, waiter, result, expired_ack)
        return result

    async def sessions_of(self, users: Sequence[str]) -> dict[str, list[SessionInfo]]:
        try:
            return await self.directory.sessions(users)
        except DirectoryUnavailable as e:
            raise Overloaded(f"session directory unavailable: {e}",
                             code="directory_unavailable") from e

    async def _queue_pushes(self, offline: OfflineSink, push: dict[str, Any],
                            result: SendResult, report: str) -> None:
        """Hand the new events to the offline bridge (the policy decides who is pushed).
        The events are stored and delivered already: a queue failure is reported per
        user (``push: "not_queued"``), not as a failed send."""
        events = [OfflinePush(r.user, r.seq, r.sessions > 0) for r in result.results
                  if not r.duplicate and r.seq is not None]
        try:
            queued = await offline.enqueue(push, events, report)
        except StoreError as e:
            log.error("queueing pushes failed", error=str(e), users=len(events))
            queued, failed = set(), {e.user for e in events}
        else:
            failed = set()
        for r in result.results:
            if r.user in queued:
                r.push = "queued"
            elif r.user in failed:
                r.push = "not_queued"

    async def _stored_frame(self, user: str, seq: int) -> str | None:
        async with StoreCall(self.config.store_deadline_s):
            events = await self.store.fetch(user, seq - 1, 1)
        if not events or events[0].seq != seq:
            return None  # expired meanwhile
        ev = events[0]
        return event_frame(ev.seq, ev.id, ev.body, ev.created_at,
                           self.config.inline_event_max_bytes)

    def _add_waiter(self, req: SendRequest, seq: int) -> tuple[tuple[str, int], _AckWaiter]:
        key = (req.users[0], seq)
        w = _AckWaiter(req.device)
        self._ack_waiters[key].append(w)
        return key, w

    def release_ack_waiters(self) -> None:
        """The process is stopping and its sessions are closed: nobody can ack here any
        more. Sends waiting for an ack are answered ``shutting_down`` (retryable; the
        event is stored) now, rather than cut without an answer at the end of the grace."""
        for waiters in self._ack_waiters.values():
            for w in waiters:
                if not w.future.done():
                    w.future.set_exception(ShuttingDown(
                        "the gateway is stopping before a client acked; the event stays "
                        "stored (retry with the same 'id')", field="ack"))

    async def _wait_ack(self, req: SendRequest, waiter: tuple[tuple[str, int], _AckWaiter],
                        result: SendResult, expired: bool = False) -> None:
        """Wait for the ack of the send's event; ``expired``: the event of a retry is gone
        (its ttl passed): answered at once, nobody can ack it any more (the retry waited
        its whole ack timeout, then said the event "stays stored")."""
        key, w = waiter
        try:
            if expired:
                seq = result.results[0].seq
                err = AckTimeout(f"seq {seq} of user {req.users[0]!r} expired before a client "
                                 "acked it and is stored no more (a send with a new 'id' "
                                 "stores it again)", field="ack")
                err.extra.update(result.to_dict())
                raise err
            try:
                session_id = await asyncio.wait_for(w.future, req.ack_timeout_ms / 1000)
            except ShuttingDown as e:
                e.extra.update(result.to_dict())
                raise
            result.results[0].acked_by = session_id
        except TimeoutError:
            seq = result.results[0].seq
            err = AckTimeout(f"no client acked seq {seq} of user {req.users[0]!r} within "
                             f"{req.ack_timeout_ms} ms; the event stays stored", field="ack")
            err.extra.update(result.to_dict())
            raise err from None
        finally:
            waiters = self._ack_waiters.get(key)
            if waiters is not None:
                waiters.remove(w)
                if not waiters:
                    del self._ack_waiters[key]

    async def _send_filter(self, req: SendRequest, flt: Filter, t0: float,
                           report: str) -> SendResult:
        now = time.time()
        frame = encode_event(None, req.id, req.body, now)
        counter = 0
        if flt.find_any:
            counters, key = self._any_counters, flt.key()
            counter = counters.pop(key, 0)
            counters[key] = counter + 1  # (to the end: the latest used)
            if len(counters) > ANY_COUNTERS_MAX:  # a filter per account or device: bounded
                del counters[next(iter(counters))]
        result = SendResult(report=report)
        if flt.target.account is not None:
            user = flt.target.account
            try:
                live: list[SessionInfo] | None = (await self.directory.sessions([user])).get(
                    user, [])
            except DirectoryUnavailable as e:  # the hubs match their own sessions instead
                log.warning("directory unavailable; a filter send asks every hub",
                            error=str(e))
                live = None
            if live is not None:
                n = self._deliver(select(live, flt, counter), frame, 0, t0, None)
            else:
                n = await self.hubs.broadcast(flt, frame, counter, t0)
            result.results.append(UserResult(user, None, n))
            result.sessions = n
        else:
            result.sessions = await self.hubs.broadcast(flt, frame, counter, t0)
        # a filter addresses sessions, not users: both counts are sessions reached
        self.reports.sent(report, result.sessions, 0, 0, result.sessions,
                          now + self.config.report_ttl_s)
        self.metrics.sent("filter", 1)
        self.metrics.delivered(result.sessions)
        return result

    # -- inbox ---------------------------------------------------------------------------

    async def fetch(self, user: str, after: int, limit: int) -> tuple[list[Event], int, bool]:
        """Events after ``after`` (at most ``limit``, and at most ``fetch_max_bytes`` of
        bodies, but always at least one), the head, and whether more remain."""
        async with StoreCall(self.config.store_deadline_s):
            # events first: the head read after them is at least their last seq (read
            # before, a commit in between gave a head below the events and more: false
            # on a reply cut short by limit)
            events = await self.store.fetch(user, after, limit)
            head = await self.store.head(user)
            if head is None:
                raise NotFound(f"user {user!r} has no inbox", field="user", code="unknown_user")
        budget = self.config.fetch_max_bytes
        for i, ev in enumerate(events):
            budget -= len(ev.body)
            if budget < 0 and i > 0:
                return events[:i], head, True
        return events, head, bool(events) and events[-1].seq < head

    async def mark_read(self, user: str, seqs: Sequence[int],
                        ranges: Sequence[tuple[int, int]]) -> ReadState:
        try:
            async with StoreCall(self.config.store_deadline_s):
                return await self.store.mark_read(user, seqs, ranges)
        except KeyError:
            raise NotFound(f"user {user!r} has no inbox", field="user",
                           code="unknown_user") from None

    async def read_state(self, user: str) -> ReadState:
        try:
            async with StoreCall(self.config.store_deadline_s):
                return await self.store.read_state(user)
        except KeyError:
            raise NotFound(f"user {user!r} has no inbox", field="user",
                           code="unknown_user") from None


    # -- devices (offline bridge) ------------------------------------------------------

    def _device_store(self) -> DeviceStore:
        return self.store  # type: ignore[return-value]  # the SQL store implements both

    @staticmethod
    def _check_device(user: str, app: str, platform: str, token: str) -> None:
        try:
            check_device(user, app, platform, token)
        except ValueError as e:  # the message starts with the field's name
            raise InvalidRequest(str(e), field=str(e).split()[0]) from None

    async def register_device(self, user: str, app: str, platform: str, token: str) -> Device:
        """Store a push token for ``(user, app)`` (a known token moves to this user)."""
        self._check_device(user, app, platform, token)
        async with StoreCall(self.config.store_deadline_s):
            return await self._device_store().register_device(user, app, platform, token)

    async def remove_device(self, user: str, app: str, platform: str, token: str) -> bool:
        """Remove the token if it belongs to ``(user, app)``; whether it did."""
        self._check_device(user, app, platform, token)
        async with StoreCall(self.config.store_deadline_s):
            return await self._device_store().remove_device(user, app, platform, token)

    async def devices(self, user: str) -> list[Device]:
        async with StoreCall(self.config.store_deadline_s):
            return await self._device_store().devices([user])

    # -- delivery reports ----------------------------------------------------------------

    def _report_store(self) -> ReportStore:
        return self.store  # type: ignore[return-value]  # the SQL store implements both

    async def report(self, report: str) -> Report:
        check_id(report, "report")
        async with StoreCall(self.config.store_deadline_s):
            found = await self._report_store().report(report)
        if found is None:  # perhaps just sent: its counts are not written yet
            async with StoreCall(self.config.store_deadline_s):
                await self.reports.settle()  # a store that cannot write them: 503
                found = await self._report_store().report(report)
        if found is None:
            raise NotFound(f"no delivery report {report!r} (unknown, or expired with its "
                           "events)", field="report", code="unknown_report")
        return found

    async def latest_reports(self, limit: int) -> list[Report]:
        if not 1 <= limit <= MAX_REPORTS_LIMIT:
            raise InvalidRequest(f"'limit' must be an integer in 1..{MAX_REPORTS_LIMIT}",
                                 field="limit")
        async with StoreCall(self.config.store_deadline_s):
            return await self._report_store().latest_reports(limit)

    async def report_user(self, report: str, user: str) -> ReportUser:
        check_id(report, "report")
        check_id(user, "user")
        async with StoreCall(self.config.store_deadline_s):
            found = await self._report_store().report_user(report, user)
        if found is None:
            await self.report(report)  # no such report at all: 404 unknown_report (field
            # report), as documented for every report route; the user is not the problem
            raise NotFound(f"user {user!r} has no stored event of report {report!r}",
                           field="user", code="unknown_report_user")
        return found


class _NoReports(Reports):
    """Counts nothing (a core built without a report counter, e.g. in unit tests)."""

    def sent(self, report: str, addressed: int, stored: int, duplicates: int,
             delivered: int, expires_at: float) -> None:
        pass

    def delivered_event(self, user: str, seq: int, delivered: bool) -> None:
        pass

    def acked_event(self, user: str, seq: int) -> None:
        pass

    def pushed(self, report: str, n: int = 1) -> None:
        pass

    def push_failed(self, report: str, reason: str) -> None:
        pass

    async def settle(self) -> None:
        pass
