"""pushgate.store.batcher.GroupCommitter against an in-test fake store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from pushgate.store.base import Appended, NewEvent, StoreOverloaded, StoreUnavailable
from pushgate.store.batcher import GroupCommitter


def ev(user: str, id: str | None = None) -> NewEvent:
    return NewEvent(user=user, body=b"{}", ttl_s=60, id=id)


class FakeStore:
    """Allocates per-user seqs like the real store; records every call. While ``gate``
    is clear, calls wait (so the test can queue up the next batch). Batches holding an
    event of user ``"poison"`` fail."""

    def __init__(self) -> None:
        self.calls: list[list[NewEvent]] = []
        self.heads: dict[str, int] = {}
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()

    async def append(self, events: Sequence[NewEvent]) -> list[Appended]:
        self.calls.append(list(events))
        self.entered.set()
        await self.gate.wait()
        if any(e.user == "poison" for e in events):
            raise StoreUnavailable("disk on fire")
        out = []
        for e in events:
            self.heads[e.user] = self.heads.get(e.user, 0) + 1
            out.append(Appended(e.user, self.heads[e.user], e.id, 1.0))
        return out


@pytest.fixture
async def store() -> FakeStore:
    return FakeStore()


async def started(store: FakeStore, **opts: int) -> GroupCommitter:
    committer = GroupCommitter(store, **opts)  # type: ignore[arg-type]
    await committer.start()
    return committer


async def test_each_caller_gets_its_own_slice_in_order(store: FakeStore) -> None:
    committer = await started(store)
    calls = [[ev("a", f"{i}-{j}") for j in range(i % 3 + 1)] for i in range(30)]

    results = await asyncio.gather(*(committer.append(c) for c in calls))
    await committer.close()

    for call, result in zip(calls, results, strict=True):
        assert [r.id for r in result] == [e.id for e in call]
    assert sorted(r.seq for result in results for r in result) == list(range(1, 61))
    assert len(store.calls) < 5
    assert (committer.batches, committer.committed) == (len(store.calls), 60)


async def test_batches_respect_max_batch_and_never_split_a_call(store: FakeStore) -> None:
    committer = await started(store, max_batch=10)
    sizes = [3, 4, 5, 12, 1, 9, 2]

    await asyncio.gather(*(committer.append([ev(f"u{n}") for _ in range(n)]) for n in sizes))
    await committer.close()

    batch_sizes = [len(c) for c in store.calls]
    assert sum(batch_sizes) == sum(sizes)
    assert all(size <= 10 for size in batch_sizes if size != 12)  # 12 > max_batch: alone
    assert [len(c) for c in store.calls if any(e.user == "u12" for e in c)] == [12]


async def test_store_error_fails_only_that_batch(store: FakeStore) -> None:
    committer = await started(store)
    store.gate.clear()
    first = asyncio.create_task(committer.append([ev("a")]))
    await store.entered.wait()  # batch 1 = [first] is in flight; the next two queue up
    poisoned = asyncio.create_task(committer.append([ev("poison")]))
    bystander = asyncio.create_task(committer.append([ev("b")]))
    await asyncio.sleep(0)
    store.gate.set()

    assert [r.seq for r in await first] == [1]
    for task in (poisoned, bystander):
        with pytest.raises(StoreUnavailable, match="disk on fire"):
            await task
    assert [r.seq for r in await committer.append([ev("b")])] == [1]  # later batches work
    await committer.close()
    assert [[e.user for e in c] for c in store.calls] == [["a"], ["poison", "b"], ["b"]]


async def test_invalid_event_fails_only_its_caller(store: FakeStore) -> None:
    committer = await started(store)
    bad = NewEvent(user="a", body=b"{}", ttl_s=0)
    with pytest.raises(ValueError, match="ttl_s"):
        await committer.append([ev("a"), bad])
    assert [r.seq for r in await committer.append([ev("a")])] == [1]
    await committer.close()


async def test_overload_is_refused_with_a_retryable_error(store: FakeStore) -> None:
    committer = await started(store, max_pending=5)
    store.gate.clear()
    in_flight = asyncio.create_task(committer.append([ev("a")]))
    await store.entered.wait()
    queued = [asyncio.create_task(committer.append([ev("a"), ev("a")])) for _ in range(2)]
    await asyncio.sleep(0)
    assert committer.pending == 4

    with pytest.raises(StoreOverloaded) as caught:
        await committer.append([ev("a"), ev("a")])
    assert caught.value.retryable
    store.gate.set()
    await asyncio.gather(in_flight, *queued)
    await committer.close()


async def test_close_drains_queue_then_refuses(store: FakeStore) -> None:
    committer = await started(store)
    store.gate.clear()
    tasks = [asyncio.create_task(committer.append([ev("a")])) for _ in range(5)]
    await store.entered.wait()
    closing = asyncio.create_task(committer.close())
    await asyncio.sleep(0)
    with pytest.raises(StoreUnavailable):
        await committer.append([ev("a")])
    store.gate.set()
    await closing

    assert sorted(r.seq for [r] in await asyncio.gather(*tasks)) == [1, 2, 3, 4, 5]
    await committer.close()  # idempotent


async def test_caller_cancelled_before_its_batch_is_not_stored(store: FakeStore) -> None:
    committer = await started(store)
    store.gate.clear()
    first = asyncio.create_task(committer.append([ev("a")]))
    await store.entered.wait()
    cancelled = asyncio.create_task(committer.append([ev("gone")]))
    kept = asyncio.create_task(committer.append([ev("b")]))
    await asyncio.sleep(0)
    cancelled.cancel()
    store.gate.set()

    await asyncio.gather(first, kept)
    await committer.close()
    assert cancelled.cancelled()
    assert "gone" not in store.heads


async def test_not_started_is_unavailable(store: FakeStore) -> None:
    committer = GroupCommitter(store)  # type: ignore[arg-type]
    with pytest.raises(StoreUnavailable):
        await committer.append([ev("a")])
    assert await committer.append([]) == []
    await committer.close()


async def test_linger_lets_calls_arriving_just_after_join_the_same_commit(
    store: FakeStore,
) -> None:
    async def staggered(committer: GroupCommitter) -> int:
        before = len(store.calls)
        first = asyncio.ensure_future(committer.append([ev("a")]))
        await asyncio.sleep(0)  # the first call is queued and the worker woke up
        await asyncio.sleep(0)
        await asyncio.gather(first, committer.append([ev("b")]))
        return len(store.calls) - before

    eager = GroupCommitter(store)  # type: ignore[arg-type]
    await eager.start()
    assert await staggered(eager) == 2  # no linger: the first commits alone
    await eager.close()

    lingering = GroupCommitter(store, linger_s=0.05)  # type: ignore[arg-type]
    await lingering.start()
    assert await staggered(lingering) == 1
    await lingering.close()


def test_negative_linger_is_refused(store: FakeStore) -> None:
    with pytest.raises(ValueError, match="linger_s"):
        GroupCommitter(store, linger_s=-1)  # type: ignore[arg-type]
