"""Delivery reports: the per-process counter of what happened to each send.

Every process that sees a send's events happen (the routing core: addressed, stored,
duplicates, delivered; the acks reaching a router; the offline bridge: pushed, failed)
adds to a :class:`ReportCounter`; it keeps deltas in memory, keyed by report id, and
writes them every ``report_flush_interval_s`` in one store transaction
(:meth:`~pushgate.store.base.ReportStore.record_reports`). The hot path costs a dict
update per send; no database round trip per delivery. Delivered is counted by the
routing core when it hands an event to live sessions (once per user and send; the
event row's DELIVERED mark, for the per-user status, is written with the event when the
core knew the sessions before storing, else by the flush); acks are counted from the
events' ACKED mark in the store (so a user counts once however many sessions, hubs or
routers acked); read marks are counted by the store's ``mark_read`` itself.

Report ids: a send's ``id`` when it has one, else a new one (:func:`new_report_id`).
A flush that fails keeps its deltas for the next one (counts arrive late, not lost);
a process that dies loses at most one interval of counts.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Protocol

from pushgate.logs import get_logger
from pushgate.store.base import ReportDelta, ReportStore, StoreError
from pushgate.tasks import cancel_and_wait

log = get_logger("pushgate.reports")

#: how many flush intervals :meth:`ReportCounter.settle` waits for other processes
SETTLE_MARGIN = 1.5
#: while the store keeps refusing the report counts, one warning per this many seconds
#: (a flush every interval_s: 23 warnings in 12 s of an outage)
WARN_EVERY_S = 30.0

_prefix = os.urandom(4).hex()
_counter = 0
_ms = -1
_head = ""


def new_report_id() -> str:
    """A report id for a send without ``id``: ``r-<ms>-<process>-<n>`` (hex, 32
    characters: unix milliseconds, a random process prefix, a counter), unique across
    processes and sortable by time within a process."""
    global _counter, _ms, _head
    _counter = (_counter + 1) & 0xFFFFFFFF
    ms = time.time_ns() // 1_000_000
    if ms != _ms:  # the head changes once a millisecond at most: formatted then
        _ms, _head = ms, "r-%012x-%s-" % (ms, _prefix)  # noqa: UP031
    # %-formatting: half the cost of an f-string here (once per send)
    return _head + "%08x" % _counter  # noqa: UP031


class Reports(Protocol):
    """What the routing core and the bridge call (synchronous, never raise)."""

    def sent(self, report: str, addressed: int, stored: int, duplicates: int,
             delivered: int, expires_at: float) -> None: ...

    def delivered_event(self, user: str, seq: int, delivered: bool) -> None:
        """Set (or clear) the DELIVERED mark of a stored event whose row was written
        without (with) it: per-user status only, counts come with :meth:`sent`."""
        ...

    def acked_event(self, user: str, seq: int) -> None: ...

    def pushed(self, report: str, n: int = 1) -> None: ...

    def push_failed(self, report: str, reason: str) -> None: ...

    async def settle(self) -> None:
        """Return once the counts of every send accepted before the call (by any process
        of the deployment) are in the store, barring a store error: a report read
        after it finds a send that was answered before it."""
        ...


class ReportCounter(Reports):
    """Counter deltas of this process, flushed to ``store`` every ``interval_s``."""

    def __init__(self, store: ReportStore, interval_s: float = 0.5,
                 clock: Callable[[], float] = time.time, *, solo: bool = False) -> None:
        self.store = store
        self.interval_s = interval_s
        self._failures = 0  # flushes failed in a row
        self._warned_at = 0.0  # monotonic time of the last warning about them
        # the only process that answers sends (the embedded gateway): settling is this
        # process's own flush, nobody else's counts are waited for
        self.solo = solo
        self.clock = clock
        self.deltas: dict[str, ReportDelta] = {}
        # what sends counted, as they came: (report, addressed, stored, duplicates,
        # delivered, expires_at, sent_at); a tuple appended per send is the hot path's whole cost
        # (a ReportDelta in a dict cost 4x that); the store adds repeats of one report up
        self.sends: list[tuple[str, int, int, int, int, float, float]] = []
        self.delivered: list[tuple[str, int, bool]] = []
        self.acked: list[tuple[str, int]] = []
        self.flushes = 0
        self._pending = asyncio.Event()  # nothing counted: an idle process does not wake up
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def _delta(self, report: str) -> ReportDelta:
        d = self.deltas.get(report)
        if d is None:
            d = self.deltas[report] = ReportDelta()
            self._pending.set()
        return d

    def sent(self, report: str, addressed: int, stored: int, duplicates: int,
             delivered: int, expires_at: float) -> None:
        self.sends.append((report, addressed, stored, duplicates, delivered, expires_at,
                           self.clock()))
        self._pending.set()

    def delivered_event(self, user: str, seq: int, delivered: bool) -> None:
        if not self.delivered:
            self._pending.set()
        self.delivered.append((user, seq, delivered))

    def acked_event(self, user: str, seq: int) -> None:
        if not self.acked:
            self._pending.set()
        self.acked.append((user, seq))

    def pushed(self, report: str, n: int = 1) -> None:
        self._delta(report).pushed += n

    def push_failed(self, report: str, reason: str) -> None:
        d = self._delta(report)
        d.push_failed += 1
        d.reasons[reason] = d.reasons.get(reason, 0) + 1

    async def flush(self, *, raise_errors: bool = False) -> None:
        """Write what was counted since the last flush (one store transaction). On a
        store error the deltas are kept for the next flush (and the error raised with
        ``raise_errors``)."""
        async with self._lock:
            deltas, self.deltas = self.deltas, {}
            sends, self.sends = self.sends, []
            delivered, self.delivered = self.delivered, []
            acked, self.acked = self.acked, []
            if not deltas and not sends and not delivered and not acked:
                return
            try:
                await self.store.record_reports(deltas, delivered, acked, sends)
                self.flushes += 1
                if self._failures:
                    log.info("recording delivery reports again", failed=self._failures)
                    self._failures = 0
            except StoreError as e:
                self._failures += 1
                now = time.monotonic()
                if self._failures == 1 or now - self._warned_at >= WARN_EVERY_S:
                    self._warned_at = now
                    log.warning("recording delivery reports failed; will retry",
                                error=str(e), failed=self._failures)
                self._keep(deltas, sends, delivered, acked)
                if raise_errors:
                    raise

    def _keep(self, deltas: dict[str, ReportDelta],
              sends: list[tuple[str, int, int, int, int, float, float]],
              delivered: list[tuple[str, int, bool]], acked: list[tuple[str, int]]) -> None:
        self.sends[:0] = sends
        for report, old in deltas.items():
            d = self._delta(report)
            d.addressed += old.addressed
            d.stored += old.stored
            d.duplicates += old.duplicates
            d.delivered += old.delivered
            d.acked += old.acked
            d.read += old.read
            d.pushed += old.pushed
            d.push_failed += old.push_failed
            d.expires_at = max(d.expires_at, old.expires_at)
            for reason, n in old.reasons.items():
                d.reasons[reason] = d.reasons.get(reason, 0) + n
        self.delivered[:0] = delivered
        self.acked[:0] = acked
        self._pending.set()

    async def settle(self) -> None:
        """This process's counts now; the other processes' within their next flush, at
        most one interval after they counted (waited out: ``SETTLE_MARGIN`` for the
        flush's own transaction) unless this process answers every send (``solo``)."""
        await self.flush(raise_errors=True)  # unwritten counts: not "unknown report"
        if not self.solo:
            await asyncio.sleep(self.interval_s * SETTLE_MARGIN)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._pending.wait()
            await asyncio.sleep(self.interval_s)  # gather an interval's counts
            self._pending.clear()
            try:
                await self.flush()
            except Exception:  # never stop counting; the next flush retries
                log.exception("delivery report flush failed")

    async def close(self) -> None:
        """Stop the timer and write what is left."""
        await cancel_and_wait(self._task)
        self._task = None
        await self.flush()
