"""The EventStore contract, expiry: cleanup_expired and the Cleaner; run on every backend
of conftest.py."""

from __future__ import annotations

import asyncio

import pytest

from pushgate.store import Cleaner, SqlEventStore, StoreUnavailable
from tests.support.sql import run_sql

from .conftest import FakeClock, StoreFactory, ev, read_set


async def test_unread_stays_exact_across_cleanup(store: SqlEventStore, clock: FakeClock) -> None:
    await store.append([ev("a", ttl=10) for _ in range(6)] + [ev("a", ttl=1000) for _ in range(4)])
    await store.append([ev("b", ttl=10), ev("b", ttl=1000)])
    await store.mark_read("a", [1, 2, 3, 7, 8], [])  # 3 short-lived and 2 long-lived read
    await store.mark_read("b", [2], [])
    clock.advance(10)

    counts = [await store.cleanup_expired(clock(), 2) for _ in range(5)]
    assert counts == [2, 2, 2, 1, 0]

    a = await store.read_state("a")
    assert (a.head, a.live, a.unread, read_set(a.read)) == (10, 4, 2, {7, 8})
    assert [e.seq for e in await store.fetch("a", 0, 100)] == [7, 8, 9, 10]
    b = await store.read_state("b")
    assert (b.head, b.live, b.unread, read_set(b.read)) == (2, 1, 0, {2})


async def test_cleanup_counts_and_stops_at_zero(store: SqlEventStore, clock: FakeClock) -> None:
    await store.append([ev("a", ttl=10) for _ in range(5)] + [ev("b", ttl=10), ev("b", ttl=100)])
    assert await store.cleanup_expired(clock(), 10) == 0  # nothing expired yet
    clock.advance(10)

    assert [await store.cleanup_expired(clock(), 4) for _ in range(3)] == [4, 2, 0]
    assert (await store.read_state("a")).live == 0
    assert (await store.read_state("b")).live == 1
    assert await store.heads(["a", "b"]) == {"a": 5, "b": 2}


async def test_cleanup_splits_a_large_append_across_batches(
    store: SqlEventStore, clock: FakeClock
) -> None:
    # 600 events of one append (one expiry per event: 3 expiries rows of <= 250) and
    # users with several runs of seqs; batches of 100 take part of a row each time
    users = [f"u{i}" for i in range(150)]
    await store.append([ev(u, ttl=10) for _ in range(4) for u in users])
    await store.append([ev("keep", ttl=1000)])
    await store.mark_read("u7", [1, 3], [])
    clock.advance(10)
    counts = []
    while n := await store.cleanup_expired(clock(), 100):
        counts.append(n)
    assert counts == [100] * 6
    for u in ("u0", "u7", "u149"):
        state = await store.read_state(u)
        assert (state.head, state.live, state.unread, read_set(state.read)) == (4, 0, 0, set())
        assert await store.fetch(u, 0, 10) == []
    assert (await store.read_state("keep")).live == 1
    await store.append([ev("u7")])  # seqs go on
    assert (await store.read_state("u7")).head == 5


async def test_cleanup_recounts_when_listed_events_are_gone(
    store: SqlEventStore, clock: FakeClock
) -> None:
    await store.append([ev("a", ttl=10) for _ in range(3)] + [ev("a", ttl=1000)])
    # an operator deleted an event by hand
    await run_sql(store.url, "DELETE FROM events WHERE user_id = 'a' AND seq = 2")
    clock.advance(10)
    assert await store.cleanup_expired(clock(), 10) == 2  # the two that were there
    state = await store.read_state("a")
    assert (state.head, state.live) == (4, 1)
    assert await store.cleanup_expired(clock(), 10) == 0


async def test_cleaner_runs_batches_and_reports(store: SqlEventStore, clock: FakeClock) -> None:
    await store.append([ev("a", ttl=10) for _ in range(7)])
    clock.advance(10)
    reported: list[int] = []
    cleaner = Cleaner(store, batch=3, on_deleted=reported.append, clock=clock)

    assert await cleaner.run_once() == 7
    assert reported == [3, 3, 1]
    assert await cleaner.run_once() == 0
    assert cleaner.total_deleted == 7


async def test_concurrent_cleaners_keep_counts_exact(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    stores = [await make_store() for _ in range(3)]
    users = [f"u{i}" for i in range(20)]
    await stores[0].append([ev(u, ttl=10) for _ in range(10) for u in users])
    await stores[0].append([ev(u, ttl=1000) for u in users])
    for u in users[:10]:
        await stores[0].mark_read(u, [], [(5, 11)])  # 6 expiring + 1 staying read
    clock.advance(10)

    async def drain(store: SqlEventStore) -> int:
        total = 0
        while True:
            try:
                n = await store.cleanup_expired(clock(), 7)
            except StoreUnavailable:  # gave up racing the others: retryable
                continue
            if not n:
                return total
            total += n

    assert sum(await asyncio.gather(*(drain(s) for s in stores))) == 200
    for u in users:
        state = await stores[1].read_state(u)
        read = read_set(state.read)
        assert (state.head, state.live, state.unread) == (11, 1, 0 if read else 1)
        assert read == ({11} if u in users[:10] else set())


class FlakyCleanupStore:
    """Delegates to a real store; the first ``failures`` cleanup calls raise."""

    def __init__(self, inner: SqlEventStore, failures: int) -> None:
        self.inner, self.failures = inner, failures

    async def cleanup_expired(self, now: float, batch: int) -> int:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("database went away")
        return await self.inner.cleanup_expired(now, batch)

    async def cleanup_expired_reports(self, now: float, batch: int) -> int:
        return await self.inner.cleanup_expired_reports(now, batch)


async def test_cleaner_survives_store_errors(
    store: SqlEventStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    await store.append([ev("a", ttl=10) for _ in range(5)])
    clock.advance(10)
    all_gone = asyncio.Event()
    flaky = FlakyCleanupStore(store, failures=2)
    cleaner = Cleaner(flaky, interval_s=0.01, batch=2, clock=clock)  # type: ignore[arg-type]
    cleaner.on_deleted = lambda _n: all_gone.set() if cleaner.total_deleted == 5 else None

    await cleaner.start()
    async with asyncio.timeout(10):
        await all_gone.wait()
    await cleaner.close()

    assert (await store.read_state("a")).live == 0
    failed = [r for r in caplog.records if "cleanup failed" in r.getMessage()]
    # an outage is one warning line per round, not a traceback each time
    assert len(failed) == 2 and all(r.levelname == "WARNING" and r.exc_info is None
                                    for r in failed), failed
    assert "database went away" in failed[0].getMessage()


async def test_cleaner_runs_only_while_holding_the_lease(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    store, other = await make_store(), await make_store()
    await store.append([ev("a", ttl=10) for _ in range(5)])
    clock.advance(10)
    assert await other.acquire_lease("cleanup", "elsewhere", 60)
    cleaner = Cleaner(store, batch=2, clock=clock, lease=store, holder="me", lease_ttl_s=60)

    assert await cleaner.run_once() == 0
    assert not cleaner.holding
    clock.advance(60)  # the other holder died: its lease expires
    assert await cleaner.run_once() == 5
    assert cleaner.holding
    assert not await other.acquire_lease("cleanup", "elsewhere", 60)
    await cleaner.close()  # releases the lease
    assert await other.acquire_lease("cleanup", "elsewhere", 60)


async def test_events_past_the_bitmaps_seqs_expire_without_stalling_the_cleanup(
    store: SqlEventStore, clock: FakeClock
) -> None:
    """Read bitmaps hold seqs up to 2^32-1; an expired event above that made every
    cleanup round fail (OverflowError) and roll back, and the row stayed first in expiry
    order: nobody's events were cleaned up any more."""
    # an inbox with a long history: its head just below 2^32
    await run_sql(store.url, "INSERT INTO inboxes (user_id, head_seq, live, read_bitmap, "
                  f"updated_at) VALUES ('big', {2**32 - 3}, 0, X'', 0)")
    got = await store.append([ev("big", ttl=10) for _ in range(4)] + [ev("small", ttl=20)])
    assert [r.seq for r in got] == [2**32 - 2, 2**32 - 1, 2**32, 2**32 + 1, 1]
    await store.mark_read("big", [2**32 - 1], [])
    clock.advance(10)
    assert await store.cleanup_expired(clock(), 100) == 4
    big = await store.read_state("big")
    assert (big.head, big.live, big.unread, read_set(big.read)) == (2**32 + 1, 0, 0, set())
    clock.advance(10)
    assert await store.cleanup_expired(clock(), 100) == 1
    assert (await store.read_state("small")).live == 0
