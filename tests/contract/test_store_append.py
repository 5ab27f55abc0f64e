"""The EventStore contract, append: dense seqs, idempotency ids, group commit; run on
every backend of conftest.py."""

from __future__ import annotations

import asyncio

import pytest

from pushgate.store import Appended, GroupCommitter, NewEvent, SqlEventStore

from .conftest import TTL, FakeClock, StoreFactory, ev

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

    # the stored event's times, not the retry's: it is that event
    assert again[0] == Appended("a", 1, "m1", first.created_at, True, first.expires_at)
    assert first.expires_at == first.created_at + TTL
    assert again[1].expires_at == again[1].created_at + TTL
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
