"""TTL cleanup: a background task deleting expired events in short transactions.

Each round takes one timestamp and calls ``store.cleanup_expired(now, batch)`` until it
returns fewer than ``batch``, yielding to the event loop between batches so appends
and reads interleave. Store errors are logged and retried at the next interval; the
task never dies of them. In the cluster only one router runs it (Redis lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from .base import EventStore

log = logging.getLogger(__name__)


class Cleaner:
    """Calls :meth:`EventStore.cleanup_expired` every ``interval_s`` seconds (first round at
    :meth:`start`). ``on_deleted(n)`` is called after each non-empty batch (metrics);
    ``pause_s`` is slept between batches; ``total_deleted`` counts everything deleted."""

    def __init__(
        self,
        store: EventStore,
        *,
        interval_s: float = 60.0,
        batch: int = 1000,
        pause_s: float = 0.0,
        on_deleted: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval_s <= 0 or batch < 1 or pause_s < 0:
            raise ValueError("interval_s must be > 0, batch >= 1 and pause_s >= 0")
        self.store = store
        self.interval_s = interval_s
        self.batch = batch
        self.pause_s = pause_s
        self.on_deleted = on_deleted
        self.total_deleted = 0
        self._clock = clock
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """One round: delete everything expired as of now, batch by batch. Returns the
        number deleted. Store errors propagate (batches already done stay deleted)."""
        now = self._clock()
        total = 0
        while True:
            n = await self.store.cleanup_expired(now, self.batch)
            if n:
                total += n
                self.total_deleted += n
                if self.on_deleted is not None:
                    self.on_deleted(n)
            if n < self.batch or self._stop.is_set():
                break
            await asyncio.sleep(self.pause_s)
        if total:
            log.info("deleted %d expired events", total)
        return total

    async def start(self) -> None:
        """Start the background task (idempotent)."""
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._loop(), name="pushgate-cleanup")

    async def close(self) -> None:
        """Stop after the batch in progress (never interrupts a transaction). Idempotent."""
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            await task

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("event cleanup failed; retrying in %.0f s", self.interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval_s)
