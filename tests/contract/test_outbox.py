"""The PushOutbox contract (offline bridge queue + acks), on every backend of conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from alembic import command

from pushgate.store import (
    ClaimedPush,
    PushJob,
    SqlEventStore,
    StoreError,
    alembic_config,
    migrate,
    open_store,
)
from pushgate.store.outbox import PUSH_GROUP
from tests import services
from tests.support.sql import run_sql

from .conftest import BACKENDS, FakeClock, StoreFactory


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


async def test_renewing_keeps_a_claimed_batch_from_being_claimed_again(
    store: SqlEventStore, clock: FakeClock
) -> None:
    """A batch still being sent when its lease would end is renewed by its holder and
    no one else takes it; another holder's renewal changes nothing."""
    now = clock.now
    await store.enqueue_pushes([job("a", 1, now), job("b", 1, now - 1)])  # two rows
    claimed = await store.claim_pushes("w1", 10, lease_s=30)
    ids = [c.id for c in claimed]
    clock.advance(20)
    assert await store.renew_pushes("w1", ids + ids, lease_s=30) == 2  # now + 30
    assert await store.renew_pushes("w2", ids, lease_s=300) == 0  # not its rows
    clock.advance(20)  # 40 s after the claim: past the first lease, inside the renewed one
    assert await store.claim_pushes("w2", 10, lease_s=30) == []
    clock.advance(11)  # the renewed lease is over: its worker died
    assert sorted(c.job.user for c in await store.claim_pushes("w2", 10, lease_s=30)) == \
        ["a", "b"]
    assert await store.renew_pushes("w1", ids, lease_s=30) == 0  # w2 holds them now


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
    # 24 group rows of 25 pushes (due times differ) and 60 single retry rows
    await first.enqueue_pushes([job(f"u{i}", 1, clock.now - i % 24) for i in range(540)])
    await first.enqueue_pushes([job(f"r{i}", 2, clock.now - i % 24, platform="fcm",
                                    token=f"t{i}", attempts=1) for i in range(60)])
    stores = [first, *[await make_store() for _ in range(3)]]

    async def worker(i: int, store: SqlEventStore) -> list[tuple[int, str, int]]:
        got: list[tuple[int, str, int]] = []
        while batch := await store.claim_pushes(f"w{i}", 60, lease_s=60):
            got += [(c.id, c.job.user, c.job.seq) for c in batch]
            assert await store.finish_pushes(f"w{i}", [c.id for c in batch], [], []) \
                == len(batch)
        return got

    results = await asyncio.gather(*(worker(i, s) for i, s in enumerate(stores * 2)))
    pushes = [(user, seq) for r in results for _, user, seq in r]
    assert len(pushes) == 600 and len(set(pushes)) == 600
    # a row (all the pushes of one id) went to one worker only
    owners = [{row_id for row_id, _, _ in r} for r in results]
    assert sum(len(o) for o in owners) == len(set().union(*owners)) == 24 + 60
    assert await first.pending_pushes() == 0


def members(claimed: list[ClaimedPush]) -> dict[int, list[tuple[str, int]]]:
    """The claimed pushes by row id, in claim order."""
    rows: dict[int, list[tuple[str, int]]] = {}
    for c in claimed:
        rows.setdefault(c.id, []).append((c.job.user, c.job.seq))
    return rows


async def test_a_group_row_is_claimed_whole_and_expands_to_its_members_in_order(
    store: SqlEventStore, clock: FakeClock
) -> None:
    payload = b'{"push":{"title":"campaign"}}'
    await store.enqueue_pushes([PushJob(f"u{i}", i + 1, payload, clock.now) for i in range(250)])
    assert await store.pending_pushes() == 250

    first = await store.claim_pushes("w1", 10, lease_s=30)  # less than a row: the whole row
    assert len(first) == PUSH_GROUP
    assert [(c.job.user, c.job.seq) for c in first] == [(f"u{i}", i + 1) for i in range(100)]
    assert len({c.id for c in first}) == 1
    assert first[0].job.payload == payload
    assert all(c.job.payload is first[0].job.payload for c in first)  # built once per row
    assert all((c.job.platform, c.job.token, c.job.attempts, c.job.due_at)
               == (None, None, 0, clock.now) for c in first)

    second = await store.claim_pushes("w1", 149, lease_s=30)  # stops at the row boundary
    assert [(c.job.user, c.job.seq) for c in second] == [(f"u{i}", i + 1)
                                                         for i in range(100, 200)]
    rest = await store.claim_pushes("w1", 1000, lease_s=30)
    assert [(c.job.user, c.job.seq) for c in rest] == [(f"u{i}", i + 1)
                                                       for i in range(200, 250)]
    assert len({c.id for c in first + second + rest}) == 3
    assert await store.claim_pushes("w1", 1000, lease_s=30) == []

    clock.advance(31)  # the lease ended: the rows come back whole, in id order
    again = await store.claim_pushes("w2", 199, lease_s=30)
    assert list(members(again).values()) == [[(f"u{i}", i + 1) for i in range(100)]]
    again = await store.claim_pushes("w2", 150, lease_s=30)  # two rows fit exactly
    assert [len(v) for v in members(again).values()] == [100, 50]


async def test_finish_counts_pushes_and_pending_counts_pushes(
    store: SqlEventStore, clock: FakeClock
) -> None:
    await store.enqueue_pushes([job(f"u{i}", 1, clock.now) for i in range(150)]
                               + [job("r", 1, clock.now, platform="fcm", token="t", attempts=2)])
    assert await store.pending_pushes() == 151
    claimed = await store.claim_pushes("w1", 500, lease_s=30)
    assert len(claimed) == 151
    rows = members(claimed)
    assert sorted(len(v) for v in rows.values()) == [1, 50, 100]
    assert await store.pending_pushes() == 151  # claimed pushes are still pending
    ids = [c.id for c in claimed]  # every row id many times
    assert await store.finish_pushes("w2", ids, [], []) == 0  # not w2's
    big = next(i for i, v in rows.items() if len(v) == 100)
    assert await store.finish_pushes("w1", [big] * 100, [], []) == 100
    assert await store.pending_pushes() == 51
    retry = job("u7", 1, clock.now + 5, platform="apns", token="x", attempts=1)
    assert await store.finish_pushes("w1", ids, [retry], []) == 51  # the big row is gone
    assert await store.pending_pushes() == 1
    clock.advance(5)
    [again] = await store.claim_pushes("w1", 500, lease_s=30)
    assert (again.job.user, again.job.platform, again.job.token, again.job.attempts) == (
        "u7", "apns", "x", 1)


async def test_single_retry_rows_and_group_rows_are_claimed_in_due_order(
    store: SqlEventStore, clock: FakeClock
) -> None:
    now = clock.now
    await store.enqueue_pushes([job("a1", 1, now - 10), job("a2", 1, now - 10),
                                job("b1", 1, now - 5), job("b2", 1, now - 5),
                                job("b3", 1, now - 5)])
    await store.enqueue_pushes([
        job("r1", 4, now - 20, platform="fcm", token="t1", attempts=1),
        job("r2", 5, now - 7, platform="apns", token="t2", attempts=3),
        job("r3", 6, now + 5, platform="apns", token="t3", attempts=1),  # not due
    ])
    # a limit of 3 pushes: r1, then the a-group (3 in all); the r2 row would not fit
    claimed = await store.claim_pushes("w1", 3, lease_s=30)
    claimed += await store.claim_pushes("w1", 100, lease_s=30)
    assert [(c.job.user, c.job.due_at) for c in claimed] == [
        ("r1", now - 20), ("a1", now - 10), ("a2", now - 10), ("r2", now - 7),
        ("b1", now - 5), ("b2", now - 5), ("b3", now - 5)]
    by_user = {c.job.user: c.job for c in claimed}
    assert (by_user["r1"].seq, by_user["r1"].platform, by_user["r1"].token,
            by_user["r1"].attempts) == (4, "fcm", "t1", 1)
    assert (by_user["r2"].platform, by_user["r2"].token, by_user["r2"].attempts) == (
        "apns", "t2", 3)
    assert [len(v) for v in members(claimed).values()] == [1, 2, 1, 3]
    assert await store.pending_pushes() == 8  # r3 is not due yet


async def test_jobs_with_different_payloads_or_due_times_are_not_grouped(
    store: SqlEventStore, clock: FakeClock
) -> None:
    now = clock.now
    p1, p2 = b'{"push":{"title":"one"}}', b'{"push":{"title":"two"}}'
    p1_copy = bytes(bytearray(p1))  # equal bytes, another object: same group
    await store.enqueue_pushes([
        PushJob("u1", 1, p1, now - 1), PushJob("u2", 1, p2, now - 1),
        PushJob("u3", 1, p1_copy, now - 1), PushJob("u4", 1, p1, now - 2),
        PushJob("u5", 1, p2, now - 1), PushJob("u6", 1, p1, now - 1, attempts=1),
        PushJob("u7", 1, p1, now - 1, platform="fcm", token="t"),
        *[PushJob(f"v{i}", 2, p2, now - 3) for i in range(PUSH_GROUP + 1)],
    ])
    assert await store.pending_pushes() == 7 + PUSH_GROUP + 1
    claimed = await store.claim_pushes("w1", 1000, lease_s=30)
    groups = list(members(claimed).values())
    assert groups == [
        [(f"v{i}", 2) for i in range(PUSH_GROUP)],  # now - 3: a full group
        [(f"v{PUSH_GROUP}", 2)],  # the 101st: a row of its own
        [("u4", 1)],  # now - 2
        [("u1", 1), ("u3", 1)],  # p1 at now - 1
        [("u2", 1), ("u5", 1)],  # p2 at now - 1
        [("u6", 1)],  # a retry (attempts) is never grouped
        [("u7", 1)],  # nor a single-device job
    ]
    payloads = {c.job.user: c.job.payload for c in claimed}
    assert payloads["u3"] == payloads["u1"] == payloads["u4"] == p1
    assert payloads["u2"] == payloads["u5"] == p2


@pytest.mark.parametrize("backend", BACKENDS)
async def test_rows_queued_before_0004_become_single_rows(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, clock: FakeClock
) -> None:
    database = contextlib.nullcontext(f"sqlite+aiosqlite:///{tmp_path}/mig.db")
    if backend == "mysql":
        server = request.getfixturevalue("mysql_server")
        database = services.mysql_database(server, services.new_database_name("_outbox"))
    with database as url:
        await asyncio.to_thread(command.upgrade, alembic_config(url), "0003")
        await run_sql(url, "INSERT INTO push_outbox (user_id, seq, payload, due_at, "
                      f"attempts, created_at) VALUES ('a', 3, X'70', {clock.now}, 0, 0)")
        store = open_store(url, clock=clock)
        with pytest.raises(StoreError, match=r"run 'pushgate migrate' first"):  # a migration behind
            await store.start()
        await migrate(url)
        await store.start()
        try:
            assert await store.pending_pushes() == 1
            [claimed] = await store.claim_pushes("w1", 10, lease_s=30)
            assert (claimed.job.user, claimed.job.seq, claimed.job.payload) == ("a", 3, b"p")
            assert await store.finish_pushes("w1", [claimed.id], [], []) == 1
        finally:
            await store.close()
        await asyncio.to_thread(command.downgrade, alembic_config(url), "0003")
        await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
