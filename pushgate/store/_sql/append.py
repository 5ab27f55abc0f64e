"""Appending events (mixed into :class:`~pushgate.store.sql.SqlEventStore`): the
optimistic path (allocate, then insert; on a SQLite file one call to
:class:`~pushgate.store._sqlite_append.OneHopAppender`'s thread) and the careful one
for a batch with a stored idempotency id (lock the inboxes, look the ids up, then
allocate). See :mod:`pushgate.store.sql` for why the seqs stay dense.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from pyroaring import BitMap
from sqlalchemy import Insert, bindparam, insert, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import bitmap, expiry
from .._dialects import chunks
from .._sqlite_append import OneHopAppender
from ..base import Appended, NewEvent, StoreError, StoreUnavailable, check_new_event
from ..schema import events as events_t
from ..schema import expiries as expiries_t
from ..schema import inboxes as inboxes_t
from .tx import SqlTransactions, _sqlite_errors, _StoreIdExists

_EMPTY = bitmap.serialize(BitMap())


class SqlAppend(SqlTransactions):
    """``append`` and its seq allocation."""

    slow_appends: int

    async def append(self, events: Sequence[NewEvent]) -> list[Appended]:
        """See :meth:`EventStore.append`. ``ValueError`` (nothing stored) if an event is
        invalid. A duplicate ``id`` matches a stored event even when that one has
        expired but was not cleaned up yet (it is still stored)."""
        if not events:
            return []
        for ev in events:
            check_new_event(ev)
        now = self._clock()
        try:
            if self._one_hop is not None:
                return await self._append_one_hop(self._one_hop, events, now)
            return await self._write(lambda conn: self._append_fast(conn, events, now))
        except _StoreIdExists:
            self.slow_appends += 1
            return await self._write(lambda conn: self._append_checked(conn, events, now))

    async def _append_fast(
        self, conn: AsyncConnection, events: Sequence[NewEvent], now: float
    ) -> list[Appended]:
        """Allocate first, assuming no id is stored yet; the unique index checks."""
        counts, first, dup_of = _plan(events)
        alloc = [(u, n, n, _EMPTY, now) for u, n in sorted(counts.items())]
        heads = await self._dialect.allocate(conn, inboxes_t, alloc)
        rows, results = _event_rows(events, heads, counts, dup_of, now)
        try:
            await self._dialect.insert_rows(conn, "insert_events", _insert_events, rows)
        except sa_exc.IntegrityError as exc:
            if not first:  # no id in the batch: not a duplicate, a real error
                raise
            raise _StoreIdExists() from exc
        await self._dialect.insert_rows(conn, "insert_expiries", _insert_expiries,
                                        expiry.expiry_rows(rows))
        return results

    async def _append_one_hop(
        self, hop: OneHopAppender, events: Sequence[NewEvent], now: float
    ) -> list[Appended]:
        """:meth:`_append_fast` on SQLite as one call to the appender's thread."""
        counts, first, dup_of = _plan(events)
        alloc = [(u, n, n, _EMPTY, now) for u, n in sorted(counts.items())]

        def make_rows(heads: dict[str, int]) -> tuple[list[tuple[Any, ...]], list[Appended]]:
            return _event_rows(events, heads, counts, dup_of, now)

        async with self._write_lock:
            if self._engine is None:
                raise StoreUnavailable("event store is not started or already closed")
            await hop.checkpoint_step()  # the WAL's checkpoints (design-notes.md §17)
            with _sqlite_errors():
                try:
                    results: list[Appended] = await hop.append(
                        alloc, make_rows, len(events), sum(len(ev.body) for ev in events))
                except sqlite3.IntegrityError as exc:
                    if not first:
                        raise StoreError(f"IntegrityError: {exc}") from exc
                    raise _StoreIdExists() from exc
        return results

    async def _append_checked(
        self, conn: AsyncConnection, events: Sequence[NewEvent], now: float
    ) -> list[Appended]:
        """Lock the inboxes, look the ids up, then allocate (a batch with stored ids)."""
        d = self._dialect
        users = sorted({ev.user for ev in events})  # sorted: same lock order everywhere
        pairs = list(dict.fromkeys((ev.user, ev.id) for ev in events if ev.id is not None))
        if not d.exclusive_writer:  # rows must exist to be locked
            await d.ensure_inboxes(conn, inboxes_t, [_new_inbox(u, now) for u in users])
        counters = await self._counters(conn, users)
        seen = {(r[0], r[1]): (r[2], r[3], r[4]) for r in await d.find_ids(conn, events_t, pairs)}
        results, rows, touched = _allocate(events, counters, seen, now)
        if rows:
            upserts = [(u, counters[u][0], counters[u][1], _EMPTY, now) for u in touched]
            await d.insert_rows(
                conn, "upsert_inboxes", lambda: d.upsert_inboxes(inboxes_t), upserts
            )
            await d.insert_rows(conn, "insert_events", _insert_events, rows)
            await d.insert_rows(conn, "insert_expiries", _insert_expiries,
                                expiry.expiry_rows(rows))
        return results

    async def _counters(self, conn: AsyncConnection, users: list[str]) -> dict[str, list[int]]:
        """``user -> [head_seq, live]`` of existing inboxes, locked."""
        ib = inboxes_t.c
        stmt = select(ib.user_id, ib.head_seq, ib.live).where(
            ib.user_id.in_(bindparam("users", expanding=True))
        )
        stmt = self._dialect.lock(stmt, inboxes_t)
        counters: dict[str, list[int]] = {}
        for part in chunks(users, self._dialect.max_params):
            counters.update(
                (r[0], [r[1], r[2]]) for r in await conn.execute(stmt, {"users": list(part)})
            )
        return counters



def _plan(
    events: Sequence[NewEvent],
) -> tuple[dict[str, int], dict[tuple[str, str], int], dict[int, int]]:
    """New events per user, the first index of each ``(user, id)``, and which events
    repeat an earlier one of the same call."""
    counts: dict[str, int] = {}
    first: dict[tuple[str, str], int] = {}  # (user, id) -> index of its first event
    dup_of: dict[int, int] = {}
    for i, ev in enumerate(events):
        if ev.id is not None:
            j = first.setdefault((ev.user, ev.id), i)
            if j != i:
                dup_of[i] = j
                continue
        counts[ev.user] = counts.get(ev.user, 0) + 1
    return counts, first, dup_of


def _event_rows(
    events: Sequence[NewEvent], heads: dict[str, int], counts: dict[str, int],
    dup_of: dict[int, int], now: float,
) -> tuple[list[tuple[Any, ...]], list[Appended]]:
    """Event rows (primary-key order) and results, given each user's new head."""
    next_seq = {u: heads[u] - n + 1 for u, n in counts.items()}
    rows: list[tuple[Any, ...]] = []
    results: list[Appended] = []
    for i, ev in enumerate(events):
        if i in dup_of:
            first = results[dup_of[i]]
            results.append(Appended(ev.user, first.seq, ev.id, now, True, first.expires_at))
            continue
        seq = next_seq[ev.user]
        next_seq[ev.user] = seq + 1
        rows.append((ev.user, seq, ev.id, ev.body, now, now + ev.ttl_s, ev.report, ev.marks))
        results.append(Appended(ev.user, seq, ev.id, now, False, now + ev.ttl_s))
    rows.sort(key=_pk)  # primary-key order: fewer B-tree page switches
    return rows, results


def _pk(row: tuple[Any, ...]) -> tuple[str, int]:
    return row[0], row[1]


def _insert_events() -> Insert:
    return insert(events_t)


def _insert_expiries() -> Insert:
    return insert(expiries_t)


def _new_inbox(user: str, now: float) -> dict[str, Any]:
    return {"user_id": user, "head_seq": 0, "live": 0, "read_bitmap": _EMPTY, "updated_at": now}


def _allocate(
    events: Sequence[NewEvent],
    counters: dict[str, list[int]],
    seen: dict[tuple[str, str], tuple[int, float, float]],
    now: float,
) -> tuple[list[Appended], list[tuple[Any, ...]], list[str]]:
    """Give each new event the next seq of its user, in input order; duplicates of ``seen``
    (stored) or of an earlier event of the batch get that seq. Updates ``counters``."""
    results: list[Appended] = []
    rows: list[tuple[Any, ...]] = []  # events columns, in table order
    touched: dict[str, None] = {}
    for ev in events:
        if ev.id is not None and (ev.user, ev.id) in seen:
            seq, created_at, expires_at = seen[(ev.user, ev.id)]
            results.append(Appended(ev.user, seq, ev.id, created_at, True, expires_at))
            continue
        counter = counters.setdefault(ev.user, [0, 0])
        counter[0] += 1
        counter[1] += 1
        seq = counter[0]
        touched[ev.user] = None
        if ev.id is not None:
            seen[(ev.user, ev.id)] = (seq, now, now + ev.ttl_s)
        rows.append((ev.user, seq, ev.id, ev.body, now, now + ev.ttl_s, ev.report, ev.marks))
        results.append(Appended(ev.user, seq, ev.id, now, False, now + ev.ttl_s))
    return results, rows, list(touched)
