"""The PushOutbox contract (offline bridge queue + acks), on every backend of conftest.py."""

from __future__ import annotations

import asyncio

from pushgate.store import PushJob, SqlEventStore

from .conftest import FakeClock, StoreFactory


def job(user: str, seq: int, due: float, **kw: object) -> PushJob:
    return PushJob(user, seq, b'{"push":{"title":"t"}}', due, **kw)  # type: ignore[arg-type]


async def test_claim_takes_due_jobs_soonest_first_and_hides_them_for_the_lease(
    store: SqlEventStore, clock: FakeClock
) -> None:
    now = clock.now
    await store.enqueue_pushes([job("a", 1, now + 5), job("b", 1, now - 1), job("c", 2, now)])
    claimed = await store.claim_pushes("w1", 10, lease_s=30)
    assert [(c.job.user, c.job.seq) for c in claimed] == [("b", 1), ("c", 2)]
    assert claimed[0].job.payload == b'{"push":{"title":"t"}}'
    assert await store.claim_pushes("w2", 10, lease_s=30) == []  # leased; "a" not due
    clock.advance(6)
    assert [c.job.user for c in await store.claim_pushes("w2", 10, lease_s=30)] == ["a"]
    clock.advance(30)  # w1 died: its jobs are due again
    again = await store.claim_pushes("w3", 10, lease_s=30)
    assert sorted(c.job.user for c in again) == ["a", "b", "c"]
    assert await store.pending_pushes() == 3


async def test_finish_deletes_own_jobs_stores_retries_and_forgets_dead_tokens(
    store: SqlEventStore, clock: FakeClock
) -> None:
    await store.register_device("a", "app", "apns", "tok-dead")
    await store.register_device("a", "app", "fcm", "tok-ok")
    await store.enqueue_pushes([job("a", 1, clock.now), job("b", 1, clock.now)])
    claimed = await store.claim_pushes("w1", 10, lease_s=30)
    retry = job("a", 1, clock.now + 10, platform="fcm", token="tok-ok", attempts=1)
    assert await store.finish_pushes("w2", [c.id for c in claimed], [], []) == 0  # not w2's
    n = await store.finish_pushes("w1", [c.id for c in claimed], [retry], [("apns", "tok-dead")])
    assert n == 2
    assert [d.token for d in await store.devices(["a"])] == ["tok-ok"]
    assert await store.claim_pushes("w1", 10, lease_s=30) == []
    clock.advance(10)
    [again] = await store.claim_pushes("w1", 10, lease_s=30)
    assert (again.job.platform, again.job.token, again.job.attempts) == ("fcm", "tok-ok", 1)


async def test_acks_only_go_up(store: SqlEventStore) -> None:
    await store.record_acks({"a": 5, "b": 2})
    await store.record_acks({"a": 3, "b": 7})
    assert await store.acked_seqs(["a", "b", "nobody"]) == {"a": 5, "b": 7}
    await store.record_acks({})
    assert await store.acked_seqs([]) == {}


async def test_concurrent_claimers_never_share_a_job(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    first = await make_store()
    await first.enqueue_pushes([job(f"u{i}", 1, clock.now) for i in range(600)])
    stores = [first, *[await make_store() for _ in range(3)]]

    async def worker(i: int, store: SqlEventStore) -> list[int]:
        got: list[int] = []
        while batch := await store.claim_pushes(f"w{i}", 25, lease_s=60):
            got += [c.id for c in batch]
            await store.finish_pushes(f"w{i}", [c.id for c in batch], [], [])
        return got

    results = await asyncio.gather(*(worker(i, s) for i, s in enumerate(stores * 2)))
    ids = [x for r in results for x in r]
    assert len(ids) == 600 and len(set(ids)) == 600
    assert await first.pending_pushes() == 0
