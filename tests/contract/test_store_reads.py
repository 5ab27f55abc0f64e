"""The EventStore contract, reads: fetch, heads, read state and read marks; run on every
backend of conftest.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pushgate.store import NewEvent, ReadState, SqlEventStore
from tests.support.sql import run_sql

from .conftest import TTL, FakeClock, StoreFactory, ev, read_set

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


async def test_a_large_mark_read_is_marked_in_parts(
    store: SqlEventStore, clock: FakeClock, store_url: str
) -> None:
    # more seqs than a part: every stored, unexpired one is marked and counted in its
    # report once, whatever part it falls in; what was read already is left alone
    store.MARK_READ_PART = 7  # type: ignore[misc]
    await store.append([NewEvent("a", b"1", 10 if i % 5 == 0 else TTL, report=f"r{i % 3}")
                        for i in range(1, 41)])
    await store.mark_read("a", [2, 3], [])
    clock.advance(10)  # seqs 5, 10, ... 40 expired

    state = await store.mark_read("a", [39, 2], [(1, 30), (35, 1000)])

    live = {i for i in range(1, 41) if i % 5}
    assert read_set(state.read) == live - {31, 32, 33, 34}
    assert (state.head, state.live, state.unread) == (40, 40, 40 - len(read_set(state.read)))
    assert await store.read_state("a") == state
    for r in range(3):
        report = await store.report(f"r{r}")
        assert report is not None
        assert report.read == len({i for i in read_set(state.read) if i % 3 == r})


async def test_marking_everything_read_passes_over_expired_runs_in_one_step(
    store: SqlEventStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """http-api.md: ``[[1, head]]`` marks everything read. A run of expired (cleaned up)
    seqs between the oldest stored seq and the head was walked part by part, one write
    transaction per part, on every call: ~1,000 transactions (1.5 s) for two million
    expired seqs. The parts now start at the next stored seq."""
    store.MARK_READ_PART = 10  # type: ignore[misc]
    await store.append([ev("a", ttl=TTL)] + [ev("a", ttl=10) for _ in range(300)])
    clock.advance(10)
    while await store.cleanup_expired(clock(), 1000):
        pass
    await store.append([ev("a", ttl=TTL) for _ in range(25)])  # seqs 302..326
    writes = 0
    write = store._write

    async def counted(body: Any) -> Any:
        nonlocal writes
        writes += 1
        return await write(body)

    monkeypatch.setattr(store, "_write", counted)
    state = await store.mark_read("a", [], [(1, 326)])
    assert read_set(state.read) == {1, *range(302, 327)}
    assert (state.live, state.unread) == (26, 0)
    assert writes <= 4, writes  # seq 1 (and the hole), then 302..326 in three parts (was 33)
    writes = 0
    assert (await store.mark_read("a", [], [(1, 326)])).unread == 0
    assert writes == 1  # all read already: nothing left to walk


async def test_a_large_mark_read_lets_other_writers_in_between_its_parts(
    store: SqlEventStore, store_url: str
) -> None:
    # one client marking a long inbox read does not hold the store's writes up until it is
    # done: a send to another user that came after it is stored before the mark finishes
    if not store_url.startswith("sqlite"):
        pytest.skip("the write lock that orders both is the SQLite store's (one writer)")
    store.MARK_READ_PART = 10  # type: ignore[misc]
    await store.append([ev("a") for _ in range(100)])
    done: list[str] = []

    async def mark() -> None:
        await store.mark_read("a", [], [(1, 100)])
        done.append("mark")

    async def send() -> None:  # gather starts it after the mark took the write lock
        await store.append([ev("b")])
        done.append("send")

    await asyncio.gather(mark(), send())
    assert done == ["send", "mark"]
    assert (await store.read_state("a")).unread == 0


async def test_scattered_and_dense_seqs_over_a_long_inbox_are_marked_exactly(
    store: SqlEventStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # more seqs than one IN list takes (here 8): dense slices are read as a key range,
    # scattered ones as IN lists; either way exactly the live requested seqs are marked
    monkeypatch.setattr(store._dialect, "max_params", 8)
    await store.append([NewEvent("a", b"1", 10 if i % 7 == 0 else TTL, report="r")
                        for i in range(1, 201)])
    clock.advance(10)  # every 7th expired
    wanted = set(range(1, 200, 13)) | set(range(150, 171)) | {200}

    state = await store.mark_read("a", sorted(wanted), [])

    marked = {i for i in wanted if i % 7}
    assert read_set(state.read) == marked
    report = await store.report("r")
    assert report is not None and report.read == len(marked)


async def test_a_range_over_a_history_longer_than_a_million_seqs_is_marked(
    store: SqlEventStore, store_url: str
) -> None:
    # "mark all read" of a user whose head passed 1,000,000 (the old events cleaned up):
    # the range names 2,000,000 seqs, of which the few stored ones are marked
    await store.append([ev("a") for _ in range(3)])
    await run_sql(store_url, "UPDATE inboxes SET head_seq = 2000000")
    await store.append([ev("a")])  # seq 2,000,001

    state = await store.mark_read("a", [], [(1, 2_000_001)])
    assert read_set(state.read) == {1, 2, 3, 2_000_001}
    assert (state.head, state.live, state.unread) == (2_000_001, 4, 0)
