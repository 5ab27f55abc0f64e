"""TTL cleanup: a background task deleting expired events in short transactions.

Each round takes one timestamp and calls ``store.cleanup_expired(now, batch)`` until it
returns fewer than ``batch``, yielding to the event loop between batches so appends
and reads interleave, then ``store.cleanup_expired_reports`` the same way for the
delivery reports whose events are gone. Store errors are logged and retried at the next interval; the
task never dies of them.

One cleaner per cluster: with a ``lease`` (normally the store itself, see
:class:`~pushgate.store.base.Leases`) a round runs only while this cleaner holds the
lease ``lease_name``; it is renewed before every round and every ``lease_ttl_s / 3``
seconds within a long round, and released by :meth:`Cleaner.close`. A cleaner killed
at any point leaves at most one rolled-back batch and a lease that expires after
``lease_ttl_s``. Several cleaners without a lease stay correct (each batch checks that
its events are still there), they only compete for the same rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

from .base import EventStore, Leases, StoreUnavailable

log = logging.getLogger(__name__)


def default_holder() -> str:
    """A lease holder id unique to this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Cleaner:
    """Calls :meth:`EventStore.cleanup_expired` every ``interval_s`` seconds (first round at
    :meth:`start`). ``on_deleted(n)`` is called after each non-empty batch (metrics);
    ``pause_s`` is slept between batches; ``total_deleted`` counts everything deleted.

    ``duty``: the share of a round's time spent in cleanup transactions (0 < duty <= 1):
    after a batch that took ``t`` seconds the cleaner pauses ``t * (1 - duty) / duty`` (plus
    ``pause_s``), so that a large backlog leaves the database room for sends.

    ``lease``: where the cluster-wide lease lives (pass the store); ``None`` runs every
    round unconditionally (a single process, e.g. tests). ``lease_ttl_s`` defaults to
    ``max(30, 3 * interval_s)``: the holder keeps the lease across its idle intervals,
    and a dead holder is replaced within that time. ``holder`` defaults to
    :func:`default_holder`. ``holding`` says whether the last round held the lease.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        interval_s: float = 60.0,
        batch: int = 1000,
        pause_s: float = 0.0,
        duty: float = 1.0,
        on_deleted: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.time,
        lease: Leases | None = None,
        lease_name: str = "cleanup",
        lease_ttl_s: float | None = None,
        holder: str | None = None,
    ) -> None:
        if interval_s <= 0 or batch < 1 or pause_s < 0 or not 0 < duty <= 1:
            raise ValueError(
                "interval_s must be > 0, batch >= 1, pause_s >= 0 and 0 < duty <= 1"
            )
        ttl = lease_ttl_s if lease_ttl_s is not None else max(30.0, 3 * interval_s)
        if ttl <= 0:
            raise ValueError("lease_ttl_s must be > 0")
        self.store = store
        self.interval_s = interval_s
        self.batch = batch
        self.pause_s = pause_s
        self.duty = duty
        self.on_deleted = on_deleted
        self.total_deleted = 0
        self.lease = lease
        self.lease_name = lease_name
        self.lease_ttl_s = ttl
        self.holder = holder or default_holder()
        self.holding = False
        self._clock = clock
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _hold(self) -> bool:
        """Take or renew the lease (always true without one)."""
        if self.lease is None:
            return True
        held = await self.lease.acquire_lease(self.lease_name, self.holder, self.lease_ttl_s)
        if held != self.holding:
            log.info("cleanup lease %s: %s", "taken" if held else "held elsewhere", self.holder)
        self.holding = held
        return held

    async def run_once(self) -> int:
        """One round: if this cleaner holds (or can take) the lease, delete everything
        expired as of now, batch by batch. Returns the number deleted. Store errors
        propagate (batches already done stay deleted); a lease lost mid-round ends it."""
        if not await self._hold():
            return 0
        renewed = time.monotonic()
        now = self._clock()
        total = 0
        while True:
            started = time.monotonic()
            n = await self.store.cleanup_expired(now, self.batch)
            took = time.monotonic() - started
            if n:
                total += n
                self.total_deleted += n
                if self.on_deleted is not None:
                    self.on_deleted(n)
            if n < self.batch or self._stop.is_set():
                break
            await asyncio.sleep(self.pause_s + took * (1 - self.duty) / self.duty)
            if time.monotonic() - renewed >= self.lease_ttl_s / 3:
                if not await self._hold():
                    break
                renewed = time.monotonic()
        if total:
            log.info("deleted %d expired events", total)
        if not self._stop.is_set() and (self.lease is None or self.holding):
            await self._reports(now)
        return total

    async def _reports(self, now: float) -> None:
        """The delivery reports whose events are gone, batch by batch (not counted as
        events: ``on_deleted`` and the result are events only)."""
        reports = 0
        while True:
            n = await self.store.cleanup_expired_reports(now, self.batch)
            reports += n
            # (not ``n < batch``: a call takes expiry rows, each listing few reports;
            # stopping at a short one left all but one row a round, for ever)
            if n == 0 or self._stop.is_set():
                break
            await asyncio.sleep(self.pause_s)
        if reports:
            log.info("deleted %d rows of expired delivery reports", reports)

    async def start(self) -> None:
        """Start the background task (idempotent)."""
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._loop(), name="pushgate-cleanup")

    async def close(self) -> None:
        """Stop after the batch in progress (never interrupts a transaction) and release
        the lease. Idempotent."""
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        if self.lease is not None and self.holding:
            self.holding = False
            try:
                await self.lease.release_lease(self.lease_name, self.holder)
            except Exception:
                log.warning("could not release the cleanup lease (it expires on its own)",
                            exc_info=True)

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.run_once()
            except StoreUnavailable as e:  # an outage: one line, not a traceback per round
                log.warning("event cleanup failed (%s); retrying in %.0f s", e,
                            self.interval_s)
            except Exception:
                log.exception("event cleanup failed; retrying in %.0f s", self.interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval_s)
