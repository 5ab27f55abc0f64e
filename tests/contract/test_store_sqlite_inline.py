"""The SQLite store runs small appends and reads on the event loop (store/_sqlite_hop.py):
a lock held by another connection must not stall the loop, and the WAL must stay
bounded although the loop's connection never checkpoints itself."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from pushgate.store import SqlEventStore, migrate
from pushgate.store._sqlite_append import OneHopAppender

from .conftest import ev


def _size(path: str) -> int:
    return Path(path).stat().st_size


async def _store(tmp_path: Path) -> tuple[SqlEventStore, str]:
    path = str(tmp_path / "events.db")
    url = f"sqlite+aiosqlite:///{path}"
    await migrate(url)
    store = SqlEventStore(url, busy_timeout_ms=5000)
    await store.start()
    return store, path


async def test_a_write_lock_held_elsewhere_does_not_stall_the_loop(tmp_path: Path) -> None:
    store, path = await _store(tmp_path)
    try:
        await store.append([ev("alice")])  # schema warm, inline connection open
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
        try:
            append = asyncio.create_task(store.append([ev("alice"), ev("bob")]))
            gaps: list[float] = []
            last = time.monotonic()
            for _ in range(20):  # the loop keeps turning while the append waits
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now
            assert not append.done(), "the append cannot have committed: the lock is held"
            assert max(gaps) < 0.2, f"the event loop stalled for {max(gaps):.3f} s"
        finally:
            other.execute("ROLLBACK")
            other.close()
        results = await asyncio.wait_for(append, 5)
        assert [(r.user, r.seq) for r in results] == [("alice", 2), ("bob", 1)]
        assert [e.seq for e in await store.fetch("alice", 0, 10)] == [1, 2]
    finally:
        await store.close()


async def test_reads_of_the_loop_see_every_commit_and_do_not_wait_for_a_writer(
    tmp_path: Path,
) -> None:
    store, path = await _store(tmp_path)
    try:
        await store.append([ev("alice", body=b'{"n":%d}' % i) for i in range(3)])
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:  # a writer elsewhere does not block readers (WAL)
            events = await asyncio.wait_for(store.fetch("alice", 1, 10), 1)
            state = await asyncio.wait_for(store.read_state("alice"), 1)
            with pytest.raises(KeyError):
                await asyncio.wait_for(store.read_state("nobody"), 1)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert [(e.seq, e.body) for e in events] == [(2, b'{"n":1}'), (3, b'{"n":2}')]
        assert (state.head, state.live, state.unread) == (3, 3, 3)
    finally:
        await store.close()


@pytest.mark.parametrize(("appends", "body_bytes"), [(3000, 10), (400, 60_000)],
                         ids=["small-bodies", "60KB-bodies"])
async def test_the_wal_stays_bounded_under_many_small_appends(
    tmp_path: Path, appends: int, body_bytes: int,
) -> None:
    store, path = await _store(tmp_path)
    try:
        # single-event commits, each to another user: every one dirties pages of its
        # own (~2-3 x 4 KiB, and a 60 KB body ~15 overflow pages more): 25-30 MB of WAL
        # if nothing were checkpointed, 36-81 MB with a checkpoint that never reaches the
        # WAL's end. Bounded: ~4 MB until a checkpoint starts, plus what is committed
        # while its background step copies (appends do not wait for it), with margin.
        pad = b"x" * body_bytes
        for i in range(appends):
            await store.append([ev(f"user-{i}", body=b'{"n":%d,"p":"%s"}' % (i, pad))])
        wal = _size(path + "-wal")
        assert wal < 16 * 1024 * 1024, f"WAL grew to {wal / 1e6:.1f} MB"
        last = await store.fetch(f"user-{appends - 1}", 0, 1)
        assert last[0].body.startswith(b'{"n":%d,' % (appends - 1))
    finally:
        await store.close()


async def test_appends_do_not_wait_for_the_bulk_of_a_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A checkpoint's copy of the WAL runs beside the appends; only its short second
    step (what was committed meanwhile) runs while appends wait."""
    copying = threading.Event()
    release = threading.Event()
    steps: list[str] = []
    real = OneHopAppender._checkpoint

    def slow_checkpoint(self: OneHopAppender) -> None:
        steps.append("checkpoint")
        if len(steps) == 1:  # the background step: a copy that takes a while
            copying.set()
            release.wait(10)
        real(self)

    monkeypatch.setattr(OneHopAppender, "CHECKPOINT_PAGES", 20)
    monkeypatch.setattr(OneHopAppender, "_checkpoint", slow_checkpoint)
    store, _ = await _store(tmp_path)
    try:
        n = 0
        while not copying.is_set() and n < 200:
            n += 1  # (no append may wait for the copy: 1 s is ample for one)
            await asyncio.wait_for(store.append([ev(f"user-{n}")]), 1)
            await asyncio.sleep(0)  # (let the thread start the copy)
        assert copying.is_set(), "no checkpoint started after 200 appends"
        for _ in range(30):  # the copy is stuck: appends still commit, at once
            n += 1
            results = await asyncio.wait_for(store.append([ev(f"user-{n}")]), 1)
            assert results[0].seq == 1
        assert steps == ["checkpoint"]
        release.set()
        for _ in range(50):  # the next append after the copy runs the second step first
            n += 1
            await store.append([ev(f"user-{n}")])
            if len(steps) >= 2:
                break
            await asyncio.sleep(0.01)
        assert steps[:2] == ["checkpoint", "checkpoint"]
        assert [e.seq for e in await store.fetch(f"user-{n}", 0, 5)] == [1]
    finally:
        release.set()
        await store.close()
