"""Group commit: many concurrent appenders, one writer, one transaction per batch.

:class:`GroupCommitter` sits in front of an :class:`~pushgate.store.base.EventStore`.
Callers ``await committer.append(events)`` concurrently; a single writer task takes
everything queued (whole calls, up to ``max_batch`` events; a larger call goes alone),
stores it with ONE ``store.append`` call, and hands each caller its own slice of the
results. While a batch commits, the next one queues up, so under load the number of
transactions stays near the commit rate of the database, not the message rate.

``linger_s``: before taking a batch smaller than ``max_batch``, wait that long for more
calls (bounds the latency it adds; 0 = commit at once).

Ordering: calls are committed in the order they were queued; within a call, events keep
their order (the store allocates seqs in input order).
Errors: if ``store.append`` raises, every caller of that batch gets the exception
(nothing of the batch is committed: the store call is atomic). ``ValueError`` for an
invalid event is raised to its own caller before queueing. More than ``max_pending``
queued events: :class:`StoreOverloaded`. Not running (never started, closing or
closed): :class:`StoreUnavailable`.
Cancellation: a caller cancelled before its batch is taken is dropped (not stored);
once the batch is in flight its events are committed anyway.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .base import (
    Appended,
    EventStore,
    NewEvent,
    StoreError,
    StoreOverloaded,
    StoreUnavailable,
    check_new_event,
)


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(slots=True)
class _Request:
    events: list[NewEvent]
    future: asyncio.Future[list[Appended]]
    # called with the results when the batch commits after its caller went away (a
    # deadline passed while the batch was in flight): the events are stored all the same
    late: Callable[[list[Appended]], None] | None = None


class GroupCommitter:
    """Batches concurrent :meth:`append` calls into few ``store.append`` transactions.

    Does not own ``store``: :meth:`close` stops the writer, not the store.
    ``batches`` and ``committed`` count store calls and stored-or-deduplicated events.
    """

    def __init__(
        self, store: EventStore, *, max_batch: int = 1000, max_pending: int = 10_000,
        linger_s: float = 0.0,
    ) -> None:
        if max_batch < 1 or max_pending < 1 or linger_s < 0:
            raise ValueError("max_batch and max_pending must be >= 1, linger_s >= 0")
        self.store = store
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.linger_s = linger_s
        self.batches = 0
        self.committed = 0
        self._queue: deque[_Request] = deque()
        self._pending = 0
        self._wakeup = asyncio.Event()
        self._state = _State.NEW
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Events queued and not yet taken by the writer."""
        return self._pending

    async def start(self) -> None:
        """Start the writer task (idempotent while running)."""
        if self._state is _State.NEW:
            self._state = _State.RUNNING
            self._task = asyncio.create_task(self._run(), name="pushgate-group-commit")

    async def close(self) -> None:
        """Refuse new calls, commit everything already queued, stop the writer. Idempotent."""
        if self._state is _State.NEW:
            self._state = _State.CLOSED
        if self._state is not _State.RUNNING:
            if self._task is not None:
                await asyncio.shield(self._task)
            return
        self._state = _State.CLOSING
        self._wakeup.set()
        assert self._task is not None
        try:
            await asyncio.shield(self._task)
        finally:
            self._state = _State.CLOSED

    async def append(self, events: Sequence[NewEvent],
                     late: Callable[[list[Appended]], None] | None = None) -> list[Appended]:
        """Queue ``events`` for the next batch and wait until it is committed; returns one
        result per event, in order (as :meth:`EventStore.append`). ``late``: called with
        the results instead when the caller was cancelled after its batch was taken (the
        events were committed anyway)."""
        if not events:
            return []
        for ev in events:
            check_new_event(ev)
        if self._state is not _State.RUNNING:
            raise StoreUnavailable(f"group committer is {self._state.value}")
        n = len(events)
        if self._pending and self._pending + n > self.max_pending:
            raise StoreOverloaded(
                f"{self._pending} events already waiting to be stored (max {self.max_pending})"
            )
        request = _Request(list(events), asyncio.get_running_loop().create_future(), late)
        self._queue.append(request)
        self._pending += n
        self._wakeup.set()
        return await request.future

    def _take(self) -> list[_Request]:
        """Whole requests from the queue head, up to ``max_batch`` events (at least one)."""
        batch: list[_Request] = []
        count = 0
        while self._queue:
            n = len(self._queue[0].events)
            if batch and count + n > self.max_batch:
                break
            request = self._queue.popleft()
            self._pending -= n
            if not request.future.done():  # done here = caller cancelled: drop it
                batch.append(request)
                count += n
        return batch

    async def _run(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._state is not _State.RUNNING:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                if self.linger_s and self._pending < self.max_batch \
                        and self._state is _State.RUNNING:
                    # let a few more calls join: at a steady rate of single sends each
                    # commit would otherwise carry one or two events, and a transaction
                    # costs far more than an event (SQLite: ~150 µs vs ~15 µs)
                    await asyncio.sleep(self.linger_s)
                batch = self._take()
                if batch:
                    await self._commit(batch)
        finally:
            error = StoreUnavailable("group committer stopped")
            for request in self._queue:
                _fail(request, error)
            self._queue.clear()
            self._pending = 0

    async def _commit(self, batch: list[_Request]) -> None:
        events = [ev for request in batch for ev in request.events]
        try:
            results = await self.store.append(events)
            if len(results) != len(events):
                raise StoreError(f"store returned {len(results)} results for {len(events)} events")
        except asyncio.CancelledError:
            for request in batch:
                _fail(request, StoreUnavailable("group committer stopped during commit"))
            raise
        except Exception as exc:
            for request in batch:
                _fail(request, exc)
            return
        self.batches += 1
        self.committed += len(events)
        start = 0
        for request in batch:
            end = start + len(request.events)
            if not request.future.done():
                request.future.set_result(results[start:end])
            elif request.late is not None:  # its caller gave up while it was committing
                try:
                    request.late(results[start:end])
                except Exception:  # pragma: no cover - a caller's bug must not stop the writer
                    pass
            start = end


def _fail(request: _Request, exc: BaseException) -> None:
    if not request.future.done():
        request.future.set_exception(exc)
