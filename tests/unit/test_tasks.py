"""Stopping background loops whose cancellation a driver swallowed (pushgate.tasks).

The shape of the bug: a router stopped with SIGTERM never exited, because the delivery
report flusher was cancelled while its flush was inside the MySQL driver, the driver
finished the flush and returned normally, and the ``while True`` loop then waited for
the next counts for ever (tests/cluster/test_launcher.py saw the router outlive its
killed launcher)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from pushgate.router.reports import ReportCounter
from pushgate.store.base import ReportDelta, StoreUnavailable
from pushgate.tasks import cancel_and_wait


async def _swallows_once(entered: asyncio.Event, wake: asyncio.Event) -> None:
    """A loop whose first cancellation is lost (as inside a driver), then waits."""
    swallowed = False
    while True:
        try:
            entered.set()
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed = True
        await wake.wait()  # nobody sets it: a plain cancel + await would hang here


async def test_a_task_that_swallowed_a_cancel_is_cancelled_again_until_done() -> None:
    entered, wake = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(_swallows_once(entered, wake))
    await entered.wait()
    assert await asyncio.wait_for(cancel_and_wait(task, timeout_s=5), 2) is True
    assert task.cancelled()


async def test_a_task_that_never_ends_is_given_up_after_the_deadline() -> None:
    done = asyncio.Event()

    async def stubborn() -> None:
        while not done.is_set():
            try:
                await done.wait()
            except asyncio.CancelledError:
                pass

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await asyncio.wait_for(cancel_and_wait(task, timeout_s=0.2), 2) is False
    assert not task.done()
    done.set()  # leave nothing running
    await asyncio.wait_for(task, 2)


async def test_a_task_that_failed_is_reported_done_without_raising() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task) is True
    assert await cancel_and_wait(None) is True


class _DriverStore:
    """A report store whose write, like asyncmy under SQLAlchemy, finishes the write and
    returns normally when cancelled in the middle of it."""

    def __init__(self) -> None:
        self.writing = asyncio.Event()
        self.release = asyncio.Event()
        self.written: list[list[tuple[str, int, int, int, int, float]]] = []

    async def record_reports(self, deltas: Mapping[str, ReportDelta],
                             delivered: Sequence[tuple[str, int, bool]],
                             acked: Sequence[tuple[str, int]],
                             sends: Sequence[tuple[str, int, int, int, int, float]] = (),
                             ) -> None:
        self.writing.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            pass  # the driver finishes the statement; the cancellation is lost
        self.written.append(list(sends))


async def test_the_report_counter_closes_when_its_flush_swallowed_the_cancel() -> None:
    store = _DriverStore()
    counter = ReportCounter(store, interval_s=0.01)  # type: ignore[arg-type]
    await counter.start()
    counter.sent("r-1", addressed=2, stored=2, duplicates=0, delivered=1, expires_at=1e12)
    await asyncio.wait_for(store.writing.wait(), 5)  # the timer's flush is in the driver
    counter.sent("r-1", addressed=1, stored=1, duplicates=0, delivered=0, expires_at=1e12)
    await asyncio.wait_for(counter.close(), 5)  # used to wait for ever
    # both flushes wrote: the timer's (cut short by nothing) and close()'s, the rest
    assert [[s[:2] for s in sends] for sends in store.written] == [[("r-1", 2)], [("r-1", 1)]]


class _Recorder:
    def __init__(self) -> None:
        self.written: list[list[str]] = []

    async def record_reports(self, deltas: Mapping[str, ReportDelta],
                             delivered: Sequence[tuple[str, int, bool]],
                             acked: Sequence[tuple[str, int]],
                             sends: Sequence[tuple[str, int, int, int, int, float]] = (),
                             ) -> None:
        self.written.append([s[0] for s in sends])


async def test_the_embedded_gateway_settles_a_report_read_with_its_own_flush() -> None:
    """The one process that answers sends (``solo``) has nobody else's counts to wait
    for: a read of a report that is not found yet (404 ``unknown_report``) waits for this
    process's flush only, not for 1.5 flush intervals."""
    store = _Recorder()
    solo = ReportCounter(store, interval_s=3600, solo=True)  # type: ignore[arg-type]
    solo.sent("r-solo", addressed=1, stored=1, duplicates=0, delivered=0, expires_at=1e12)
    await asyncio.wait_for(solo.settle(), 5)
    assert store.written == [["r-solo"]]
    shared = ReportCounter(store, interval_s=3600)  # type: ignore[arg-type]
    shared.sent("r-shared", addressed=1, stored=1, duplicates=0, delivered=0, expires_at=1e12)
    settling = asyncio.create_task(shared.settle())
    done, _ = await asyncio.wait({settling}, timeout=0.2)
    assert not done  # waits for the other processes' next flush
    assert store.written == [["r-solo"], ["r-shared"]]  # its own counts written first
    await cancel_and_wait(settling)


class _Failing(_Recorder):
    async def record_reports(self, *args: object, **kwargs: object) -> None:
        raise StoreUnavailable("disk full")


async def test_a_report_read_while_the_counts_cannot_be_written_is_a_store_error() -> None:
    """A report whose counts this process cannot write (a full disk) is not "unknown"
    (404, not retryable): settling raises the store's error (503, retryable) and keeps
    the counts for the next flush."""
    store = _Failing()
    counter = ReportCounter(store, interval_s=3600, solo=True)  # type: ignore[arg-type]
    counter.sent("r-full", addressed=1, stored=1, duplicates=0, delivered=0, expires_at=1e12)
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(counter.settle(), 5)
    assert [s[0] for s in counter.sends] == ["r-full"]  # kept


class _Refusing:
    def __init__(self) -> None:
        self.refuse = True
        self.written = 0

    async def record_reports(self, *args: object) -> None:
        if self.refuse:
            raise StoreUnavailable("database went away")
        self.written += 1


async def test_a_store_outage_warns_once_not_every_flush(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush every 0.5 s warned every 0.5 s while the store was down (23 lines in
    12 s): one warning, another every WARN_EVERY_S; the counts are kept and written once
    the store answers."""
    from structlog.testing import capture_logs

    from pushgate.router import reports

    store = _Refusing()
    counter = ReportCounter(store, interval_s=0.01)  # type: ignore[arg-type]

    def failed(logs: list[dict[str, object]]) -> int:
        return sum("reports failed" in str(x["event"]) for x in logs)

    with capture_logs() as logs:
        for _ in range(5):
            counter.sent("r-1", addressed=1, stored=1, duplicates=0, delivered=0,
                         expires_at=1e12)
            await counter.flush()
        assert failed(logs) == 1
        monkeypatch.setattr(reports, "WARN_EVERY_S", 0.0)
        await counter.flush()
        assert failed(logs) == 2
        store.refuse = False
        await counter.flush()
        assert store.written == 1 and counter.sends == []
        assert any("reports again" in str(x["event"]) for x in logs)
