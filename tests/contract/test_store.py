"""The EventStore contract (pushgate.store.base), run on every backend of conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from pushgate.store import (
    Appended,
    Cleaner,
    Device,
    GroupCommitter,
    NewEvent,
    ReadState,
    SqlEventStore,
    StoreError,
    StoreUnavailable,
    alembic_config,
    bitmap,
    migrate,
    open_store,
)
from pushgate.store.schema import metadata
from tests import services

from .conftest import BACKENDS, FakeClock, StoreFactory

TTL = 3600


def ev(user: str, id: str | None = None, *, ttl: int = TTL, body: bytes = b'{"n":1}') -> NewEvent:
    return NewEvent(user=user, body=body, ttl_s=ttl, id=id)


def read_set(data: bytes) -> set[int]:
    return set(bitmap.deserialize(data))


# -- seqs ----------------------------------------------------------------------------


async def test_seqs_are_dense_per_user_in_input_order(
    store: SqlEventStore, clock: FakeClock
) -> None:
    first = await store.append([ev("a"), ev("b"), ev("a"), ev("c"), ev("a")])
    second = await store.append([ev("b"), ev("a")])

    assert [(r.user, r.seq) for r in first] == [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("a", 3)]
    assert [(r.user, r.seq) for r in second] == [("b", 2), ("a", 4)]
    assert all(not r.duplicate and r.created_at == clock.now for r in first + second)
    assert [e.seq for e in await store.fetch("a", 0, 100)] == [1, 2, 3, 4]
    assert [e.seq for e in await store.fetch("b", 0, 100)] == [1, 2]


async def test_seqs_never_reused_after_expiry_cleanup_and_reopen(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    store = await make_store()
    await store.append([ev("a", ttl=10) for _ in range(3)])
    clock.advance(10)
    assert await store.cleanup_expired(clock(), 100) == 3
    assert await store.fetch("a", 0, 10) == []
    await store.close()

    reopened = await make_store()
    assert await reopened.head("a") == 3
    assert (await reopened.read_state("a")).live == 0
    assert [r.seq for r in await reopened.append([ev("a"), ev("a")])] == [4, 5]


async def test_append_many_users_in_one_call(store: SqlEventStore) -> None:
    users = [f"user-{i}" for i in range(1500)]  # more than one IN-list chunk
    results = await store.append(
        [ev(u, "same-id") for u in users] + [ev(u, "same-id") for u in users]
    )

    assert [r.seq for r in results[:1500]] == [1] * 1500
    assert all(r.duplicate and r.seq == 1 for r in results[1500:])
    assert await store.heads(users) == dict.fromkeys(users, 1)


async def test_invalid_event_stores_nothing(store: SqlEventStore) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        await store.append([ev("a"), ev("a", ttl=0)])
    with pytest.raises(ValueError, match="user"):
        await store.append([ev("")])
    assert await store.head("a") is None
    assert await store.append([]) == []


async def test_keys_are_compared_byte_for_byte(store: SqlEventStore) -> None:
    # trailing space, case, non-ASCII, characters SQL text must escape
    users = ["a", "a ", "A", "\u00e4", "\u7528\u6237", "50%'\"\\\n\x00\x1a"]
    results = await store.append([ev(u, "m") for u in users] + [ev("a", "m "), ev("a", "M")])

    assert [(r.user, r.seq, r.duplicate) for r in results] == [(u, 1, False) for u in users] + [
        ("a", 2, False),
        ("a", 3, False),
    ]
    assert await store.heads(users) == dict(zip(users, [3, 1, 1, 1, 1, 1], strict=True))
    odd = users[-1]
    await store.append([ev(odd, "%s'%d", body=b"\x00'\\%s\xff")])
    assert [(e.id, e.body) for e in await store.fetch(odd, 1, 10)] == [("%s'%d", b"\x00'\\%s\xff")]
    assert [e.id for e in await store.fetch("a", 0, 10)] == ["m", "m ", "M"]
    assert [e.user for e in await store.fetch("\u7528\u6237", 0, 10)] == ["\u7528\u6237"]


# -- idempotency -----------------------------------------------------------------------


async def test_same_id_twice_in_one_call_is_stored_once(store: SqlEventStore) -> None:
    results = await store.append([ev("a", "m1"), ev("a", "m1", body=b"other"), ev("a")])

    assert [(r.seq, r.duplicate) for r in results] == [(1, False), (1, True), (2, False)]
    events = await store.fetch("a", 0, 10)
    assert [(e.seq, e.id, e.body) for e in events] == [(1, "m1", b'{"n":1}'), (2, None, b'{"n":1}')]
    assert await store.head("a") == 2


async def test_same_id_across_calls_returns_the_stored_seq(
    store: SqlEventStore, clock: FakeClock
) -> None:
    [first] = await store.append([ev("a", "m1")])
    clock.advance(5)
    again = await store.append([ev("a", "m1"), ev("a", "m2")])

    assert again[0] == Appended("a", 1, "m1", first.created_at, duplicate=True)
    assert (again[1].seq, again[1].duplicate) == (2, False)
    assert (await store.read_state("a")).live == 2
    assert [e.id for e in await store.fetch("a", 0, 10)] == ["m1", "m2"]


async def test_same_id_for_two_users_is_stored_for_both(store: SqlEventStore) -> None:
    results = await store.append([ev("a", "m1"), ev("b", "m1")])
    assert [(r.user, r.seq, r.duplicate) for r in results] == [("a", 1, False), ("b", 1, False)]

    [again] = await store.append([ev("b", "m1")])
    assert (again.seq, again.duplicate) == (1, True)
    assert len(await store.fetch("a", 0, 10)) == len(await store.fetch("b", 0, 10)) == 1


async def test_batch_with_stored_ids_mixed_with_new_events(store: SqlEventStore) -> None:
    await store.append([ev("a", "m1"), ev("b", "m1")])
    results = await store.append(
        [ev("c", "x"), ev("a", "m1"), ev("a", "m2"), ev("a", "m2"), ev("b", "m3"), ev("a")]
    )

    assert [(r.user, r.seq, r.duplicate) for r in results] == [
        ("c", 1, False),
        ("a", 1, True),
        ("a", 2, False),
        ("a", 2, True),
        ("b", 2, False),
        ("a", 3, False),
    ]
    assert [(e.seq, e.id) for e in await store.fetch("a", 0, 10)] == [(1, "m1"), (2, "m2"), (3, None)]
    assert store.slow_appends == 1  # the optimistic insert hit the unique index once
    assert [(await store.read_state(u)).live for u in "abc"] == [3, 2, 1]
    assert await store.heads(["a", "b", "c"]) == {"a": 3, "b": 2, "c": 1}


async def test_concurrent_appends_to_the_same_users_from_two_stores(
    make_store: StoreFactory,
) -> None:
    one, two = await make_store(), await make_store()
    users = [f"u{i}" for i in range(10)]

    async def send(store: SqlEventStore, tag: str) -> list[Appended]:
        results: list[Appended] = []
        for b in range(10):
            batch = [ev(u, f"{tag}-{b}-{u}") for u in users[b % 3 :]]
            results += await store.append(batch)
        return results

    first, second = await asyncio.gather(send(one, "one"), send(two, "two"))

    for user in users:
        seqs = sorted(r.seq for r in first + second if r.user == user)
        assert seqs == list(range(1, len(seqs) + 1))
        stored = {e.id: e.seq for e in await one.fetch(user, 0, 1000)}
        assert stored == {r.id: r.seq for r in first + second if r.user == user}


# -- fetch / head ------------------------------------------------------------------------


async def test_fetch_after_limit_and_order(store: SqlEventStore, clock: FakeClock) -> None:
    await store.append([ev("a", f"id{i}", body=b"%d" % i) for i in range(1, 11)])

    page = await store.fetch("a", 3, 4)
    assert [(e.seq, e.id, e.body) for e in page] == [(i, f"id{i}", b"%d" % i) for i in range(4, 8)]
    assert all(
        e.user == "a" and e.expires_at == e.created_at + TTL == clock.now + TTL for e in page
    )
    assert await store.fetch("a", 10, 5) == []
    assert await store.fetch("a", 0, 0) == []
    assert await store.fetch("nobody", 0, 10) == []


async def test_fetch_skips_expired_events_before_cleanup(
    store: SqlEventStore, clock: FakeClock
) -> None:
    await store.append([ev("a", ttl=10), ev("a", ttl=100), ev("a", ttl=10), ev("a", ttl=100)])
    clock.advance(10)  # expires_at == now counts as expired

    assert [e.seq for e in await store.fetch("a", 0, 10)] == [2, 4]
    assert [e.seq for e in await store.fetch("a", 0, 1)] == [2]
    assert await store.head("a") == 4


async def test_head_and_heads(store: SqlEventStore) -> None:
    assert await store.head("a") is None
    assert await store.heads([]) == {}
    await store.append([ev("a"), ev("a"), ev("b")])

    assert await store.head("a") == 2
    assert await store.heads(["a", "b", "nobody", "a"]) == {"a": 2, "b": 1}


# -- read state --------------------------------------------------------------------------


async def test_mark_read_seqs_and_ranges_merge(store: SqlEventStore) -> None:
    await store.append([ev("a") for _ in range(10)])

    state = await store.mark_read("a", [1, 3], [(5, 7)])
    assert (state.head, state.live, state.unread) == (10, 10, 5)
    assert read_set(state.read) == {1, 3, 5, 6, 7}

    state = await store.mark_read("a", [3], [(7, 8)])
    assert state.unread == 4
    assert read_set(state.read) == {1, 3, 5, 6, 7, 8}
    assert await store.read_state("a") == state


async def test_mark_read_ignores_future_and_unknown_seqs(store: SqlEventStore) -> None:
    await store.append([ev("a") for _ in range(3)])

    state = await store.mark_read("a", [0, -5, 3, 4, 99], [(2, 1000), (-10, -1)])
    assert read_set(state.read) == {2, 3}
    assert (state.head, state.unread) == (3, 1)

    await store.append([ev("a")])  # seq 4 was "read" while in the future: must be unread
    state = await store.read_state("a")
    assert read_set(state.read) == {2, 3}
    assert (state.head, state.live, state.unread) == (4, 4, 2)


async def test_mark_read_ignores_expired_seqs(store: SqlEventStore, clock: FakeClock) -> None:
    await store.append([ev("a", ttl=10), ev("a", ttl=10), ev("a", ttl=100), ev("a", ttl=100)])
    clock.advance(10)

    state = await store.mark_read("a", [1], [(2, 4)])
    assert read_set(state.read) == {3, 4}
    # expired events still count as live until cleanup deletes them
    assert (state.live, state.unread) == (4, 2)

    assert await store.cleanup_expired(clock(), 100) == 2
    state = await store.mark_read("a", [1, 2], [])
    assert (state.live, state.unread, read_set(state.read)) == (2, 0, {3, 4})


async def test_mark_read_errors(store: SqlEventStore) -> None:
    with pytest.raises(KeyError):
        await store.mark_read("nobody", [1], [])
    with pytest.raises(KeyError):
        await store.read_state("nobody")

    await store.append([ev("a") for _ in range(3)])
    with pytest.raises(ValueError, match="inverted"):
        await store.mark_read("a", [1], [(3, 2)])
    assert (await store.read_state("a")).unread == 3  # nothing of the failed call applied


async def test_concurrent_mark_read_calls_all_survive(store: SqlEventStore) -> None:
    await store.append([ev("a") for _ in range(100)])

    await asyncio.gather(
        *(store.mark_read("a", [i], []) for i in range(1, 51)),
        store.mark_read("a", [], [(51, 100)]),
    )

    state = await store.read_state("a")
    assert state.unread == 0
    assert read_set(state.read) == set(range(1, 101))


async def test_concurrent_read_states_each_get_their_own_user(store: SqlEventStore) -> None:
    # read_state calls made together share one query; each caller still gets its user's
    # state, or KeyError for a user without inbox, and sees what was committed before
    await store.append([ev(f"u{i}") for i in range(30) for _ in range(i % 4 + 1)])
    await store.mark_read("u3", [1, 2], [])
    users = [f"u{i}" for i in range(30)] + ["nobody", "u3"]
    results = await asyncio.gather(*(store.read_state(u) for u in users),
                                   return_exceptions=True)
    for user, r in zip(users, results, strict=True):
        if user == "nobody":
            assert isinstance(r, KeyError)
            continue
        assert isinstance(r, ReadState), r
        n = int(user[1:]) % 4 + 1
        assert (r.head, r.live) == (n, n)
        assert r.unread == (n - 2 if user == "u3" else n)
    await store.append([ev("u0")])
    assert (await store.read_state("u0")).head == 2


async def test_concurrent_mark_read_from_two_stores_on_one_database(
    make_store: StoreFactory,
) -> None:
    one, two = await make_store(), await make_store()
    await one.append([ev("a") for _ in range(40)])

    await asyncio.gather(
        *(one.mark_read("a", [i], []) for i in range(1, 41, 2)),
        *(two.mark_read("a", [i], []) for i in range(2, 41, 2)),
    )

    state = await one.read_state("a")
    assert (state.live, state.unread) == (40, 0)
    assert read_set(state.read) == set(range(1, 41))


# -- cleanup -----------------------------------------------------------------------------


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
    engine = create_async_engine(store.url)
    try:  # an operator deleted an event by hand
        async with engine.begin() as conn:
            await conn.exec_driver_sql("DELETE FROM events WHERE user_id = 'a' AND seq = 2")
    finally:
        await engine.dispose()
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
    assert "cleanup failed" in caplog.text


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


# -- leases ------------------------------------------------------------------------------


async def test_lease_has_one_holder_at_a_time(make_store: StoreFactory, clock: FakeClock) -> None:
    one, two = await make_store(), await make_store()

    assert await one.acquire_lease("cleanup", "h1", 30)
    assert not await two.acquire_lease("cleanup", "h2", 30)
    clock.advance(20)
    assert await one.acquire_lease("cleanup", "h1", 30)  # renewed until now + 30
    clock.advance(29)
    assert not await two.acquire_lease("cleanup", "h2", 30)
    clock.advance(1)  # expired: expires_at == now
    assert await two.acquire_lease("cleanup", "h2", 30)
    assert not await one.acquire_lease("cleanup", "h1", 30)
    assert await one.acquire_lease("other", "h1", 30)  # names are independent

    assert not await one.release_lease("cleanup", "h1")  # not the holder: no effect
    assert await two.release_lease("cleanup", "h2")
    assert await one.acquire_lease("cleanup", "h1", 30)


async def test_lease_race_has_one_winner(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(4)]
    for name in ("first", "second"):
        won = await asyncio.gather(
            *(s.acquire_lease(name, f"h{i}", 30) for i, s in enumerate(stores))
        )
        assert sorted(won) == [False, False, False, True]


async def test_lease_arguments_are_checked(store: SqlEventStore) -> None:
    with pytest.raises(ValueError, match="name"):
        await store.acquire_lease("", "h", 30)
    with pytest.raises(ValueError, match="holder"):
        await store.acquire_lease("n", "x" * 256, 30)
    with pytest.raises(ValueError, match="ttl_s"):
        await store.acquire_lease("n", "h", 0)


# -- devices -----------------------------------------------------------------------------


async def test_devices_register_list_and_remove(store: SqlEventStore, clock: FakeClock) -> None:
    t0 = clock.now
    assert await store.register_device("a", "app1", "apns", "tok1") == Device(
        "a", "app1", "apns", "tok1", t0
    )
    await store.register_device("a", "app2", "fcm", "tok2")
    await store.register_device("b", "app1", "fcm", "tok3")
    clock.advance(5)
    await store.register_device("a", "app1", "apns", "tok1")  # again: refreshed, not doubled

    assert await store.devices(["b", "a", "nobody", "a"]) == [
        Device("a", "app1", "apns", "tok1", t0 + 5),
        Device("a", "app2", "fcm", "tok2", t0),
        Device("b", "app1", "fcm", "tok3", t0),
    ]
    assert await store.devices(["a", "b"], app="app1") == [
        Device("a", "app1", "apns", "tok1", t0 + 5),
        Device("b", "app1", "fcm", "tok3", t0),
    ]
    assert await store.devices([]) == []

    # the device changed account: the token moves; the same string on FCM is another device
    await store.register_device("b", "app1", "apns", "tok1")
    await store.register_device("a", "app1", "fcm", "tok1")
    assert [(d.user, d.platform) for d in await store.devices(["a", "b"]) if d.token == "tok1"] == [
        ("a", "fcm"),
        ("b", "apns"),
    ]
    assert not await store.remove_device("a", "app1", "apns", "tok1")  # b's now
    assert await store.remove_device("b", "app1", "apns", "tok1")
    assert await store.remove_dead_token("fcm", "tok2")
    assert not await store.remove_dead_token("fcm", "tok2")
    assert [(d.user, d.token) for d in await store.devices(["a", "b"])] == [
        ("a", "tok1"),
        ("b", "tok3"),
    ]


async def test_device_arguments_are_checked(store: SqlEventStore) -> None:
    with pytest.raises(ValueError, match="platform"):
        await store.register_device("a", "app", "gcm", "tok")
    with pytest.raises(ValueError, match="token"):
        await store.register_device("a", "app", "fcm", "t\u00f6ken")
    with pytest.raises(ValueError, match="token"):
        await store.remove_dead_token("apns", "x" * 513)
    with pytest.raises(ValueError, match="app"):
        await store.register_device("a", "", "fcm", "tok")
    assert await store.devices(["a"]) == []


# -- group commit ------------------------------------------------------------------------


class CountingStore:
    """Delegates to a real store and counts ``append`` calls (= transactions)."""

    def __init__(self, inner: SqlEventStore) -> None:
        self.inner, self.calls = inner, 0

    async def append(self, events: list[NewEvent]) -> list[Appended]:
        self.calls += 1
        return await self.inner.append(events)


async def test_group_commit_200_concurrent_appends(store: SqlEventStore) -> None:
    counting = CountingStore(store)
    committer = GroupCommitter(counting)  # type: ignore[arg-type]
    await committer.start()

    results = await asyncio.gather(*(committer.append([ev("a", f"m{i}")]) for i in range(200)))
    await committer.close()

    assert sorted(r.seq for [r] in results) == list(range(1, 201))
    assert counting.calls < 20
    stored = {e.id: e.seq for e in await store.fetch("a", 0, 1000)}
    assert stored == {r.id: r.seq for [r] in results}


# -- lifecycle / migrations --------------------------------------------------------------


async def test_closed_store_is_unavailable(store: SqlEventStore) -> None:
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.head("a")
    with pytest.raises(StoreUnavailable):
        await store.append([ev("a")])


async def test_migrate_from_any_cwd_creates_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    monkeypatch.chdir(tmp_path)
    url = "sqlite+aiosqlite:///nested/dir/events.db"  # relative to the cwd
    await migrate(url)
    await migrate(url)  # idempotent
    assert (tmp_path / "nested" / "dir" / "events.db").is_file()

    store = open_store(url, clock=clock)
    await store.start()
    try:
        assert [r.seq for r in await store.append([ev("a")])] == [1]
    finally:
        await store.close()


async def test_migrations_match_schema_module(store_url: str) -> None:
    engine = create_async_engine(store_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), metadata)
            )
    finally:
        await engine.dispose()
    assert diff == []


@pytest.mark.parametrize("backend", BACKENDS)
async def test_migrations_upgrade_keeps_data_and_downgrade_reverts(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, clock: FakeClock
) -> None:
    database = contextlib.nullcontext(f"sqlite+aiosqlite:///{tmp_path}/mig.db")
    if backend == "mysql":
        server = request.getfixturevalue("mysql_server")
        database = services.mysql_database(server, services.new_database_name("_mig"))
    with database as url:
        cfg = alembic_config(url)
        await asyncio.to_thread(command.upgrade, cfg, "0001")
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.exec_driver_sql(
                    "INSERT INTO inboxes VALUES ('a', 1, 1, '', 0)"
                )
                await conn.exec_driver_sql(
                    "INSERT INTO events VALUES ('a', 1, 'm', 'x', 0, 9999999999)"
                )
        finally:
            await engine.dispose()

        await migrate(url)  # 0001 -> head
        store = open_store(url, clock=clock)
        await store.start()
        try:
            assert [(e.seq, e.id) for e in await store.fetch("a", 0, 10)] == [(1, "m")]
            assert [(r.seq, r.duplicate) for r in await store.append([ev("a", "m ")])] == [
                (2, False)
            ]
        finally:
            await store.close()

        # Downgrading to 0001 on MySQL makes "m" and "m " equal again: remove one first.
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.exec_driver_sql("DELETE FROM events WHERE msg_id = 'm '")
        finally:
            await engine.dispose()
        await asyncio.to_thread(command.downgrade, cfg, "base")
        await asyncio.to_thread(command.upgrade, cfg, "head")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_upgrade_to_expiries_backfills_and_cleanup_finds_old_events(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, clock: FakeClock
) -> None:
    database = contextlib.nullcontext(f"sqlite+aiosqlite:///{tmp_path}/exp.db")
    if backend == "mysql":
        server = request.getfixturevalue("mysql_server")
        database = services.mysql_database(server, services.new_database_name("_exp"))
    with database as url:
        cfg = alembic_config(url)
        await asyncio.to_thread(command.upgrade, cfg, "0004")
        now = clock()
        rows = ", ".join(f"('u{i % 7}', {i // 7 + 1}, NULL, 'x', {now}, {now + (5 if i % 3 else 50)})"
                         for i in range(700))
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.exec_driver_sql("INSERT INTO inboxes VALUES " + ", ".join(
                    f"('u{u}', 100, 100, '', 0)" for u in range(7)))
                await conn.exec_driver_sql("INSERT INTO events VALUES " + rows)
        finally:
            await engine.dispose()
        await migrate(url)  # 0004 -> head: expiries rows for the 700 stored events
        store = open_store(url, clock=clock)
        await store.start()
        try:
            clock.advance(10)
            deleted = 0
            while n := await store.cleanup_expired(clock(), 64):
                deleted += n
            assert deleted == sum(1 for i in range(700) if i % 3)
            assert sum([(await store.read_state(f"u{u}")).live for u in range(7)]) == 700 - deleted
            clock.advance(100)
            while await store.cleanup_expired(clock(), 64):
                pass
            assert [(await store.read_state(f"u{u}")).live for u in range(7)] == [0] * 7
        finally:
            await store.close()


async def test_sqlite_upgrade_to_0006_keeps_ids_unique_and_indexes_only_events_with_one(
    tmp_path: Path, clock: FakeClock
) -> None:
    """0005 -> 0006 on a SQLite file with events with and without ids: afterwards the
    index holds only the events with an id, a stored id is still found (the same seq
    comes back) and events without an id are stored as before."""
    path = tmp_path / "partial.db"
    url = f"sqlite+aiosqlite:///{path}"
    cfg = alembic_config(url)
    await asyncio.to_thread(command.upgrade, cfg, "0005")
    store = open_store(url, clock=clock)
    await store.start()
    try:
        await store.append([NewEvent("a", b"1", TTL, "m1"), NewEvent("a", b"2", TTL),
                            NewEvent("b", b"3", TTL)])
    finally:
        await store.close()
    await migrate(url)  # 0005 -> head
    with contextlib.closing(sqlite3.connect(path)) as db:
        [(sql,)] = db.execute("SELECT sql FROM sqlite_master WHERE name = "
                              "'uq_events_user_id_msg_id'").fetchall()
        assert sql.endswith("WHERE msg_id IS NOT NULL")
        entries = db.execute("SELECT count(*) FROM events INDEXED BY uq_events_user_id_msg_id "
                             "WHERE msg_id IS NOT NULL").fetchone()[0]
        assert entries == 1
    store = open_store(url, clock=clock)
    await store.start()
    try:
        again = await store.append([NewEvent("a", b"x", TTL, "m1"), NewEvent("a", b"4", TTL)])
        assert [(r.seq, r.duplicate) for r in again] == [(1, True), (3, False)]
        assert [e.body for e in await store.fetch("a", 0, 10)] == [b"1", b"2", b"4"]
    finally:
        await store.close()


async def test_start_without_schema_says_to_migrate(tmp_path: Path) -> None:
    store = open_store(f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    with pytest.raises(StoreError, match=r"migrate\(\)") as caught:
        await store.start()
    assert not caught.value.retryable
    with pytest.raises(StoreUnavailable):
        await store.head("a")  # start failed: the store stays closed


def test_open_store_rejects_unknown_schemes() -> None:
    with pytest.raises(ValueError, match="postgresql"):
        open_store("postgresql://localhost/db")
    with pytest.raises(ValueError, match="pysqlite"):
        open_store("sqlite+pysqlite:///x.db")
