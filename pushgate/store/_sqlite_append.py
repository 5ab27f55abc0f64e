"""SQLite appends in one call: on the event loop when small, else one thread hop.

Through SQLAlchemy + aiosqlite a group commit makes ~6 hand-offs between the event
loop and the driver's thread (BEGIN, allocate, insert, cursor closes, COMMIT), each a
thread wake-up and a GIL switch: at a few events per batch (the embedded gateway's
unicast load) that was a quarter of the event loop's CPU. :class:`OneHopAppender` owns
one plain ``sqlite3`` connection (same PRAGMAs) on one worker thread and runs a whole
append transaction (``BEGIN IMMEDIATE``, allocate with ``RETURNING``, insert the events
and their ``expiries`` rows, ``COMMIT``)
in a single call to that thread, or, for a batch of at most ``inline_max`` events that
finds the write lock free, right away on the loop's own connection (:mod:`._sqlite_hop`).
SQLite serializes it with every other writer of the file exactly as before (``BEGIN
IMMEDIATE`` + busy timeout; the store's write lock in the process).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

from ._dialects import chunks, multi_row
from ._sqlite_hop import OneHopConnection
from .expiry import expiry_rows

log = logging.getLogger("pushgate.store")


def insert_many(conn: Any, sql: str, row: str, rows: Sequence[tuple[Any, ...]],
                max_params: int) -> None:
    """``rows`` through ``sql`` (a single-row INSERT whose ``VALUES`` row is ``row``)
    as multi-row statements of up to ``max_params`` parameters. ``executemany`` binds
    and steps each row on its own, letting go of the GIL and taking it back once per
    row (thousands of hand-offs with the event loop per report flush); one statement per
    chunk costs ~0.6 of that per row on its own (design-notes.md §13). For the large
    batches only: each row count is its own statement to prepare (the event appends of a
    few rows each stay on ``executemany``)."""
    if not rows:
        return
    per = max(1, max_params // len(rows[0]))
    full = ""
    for part in chunks(rows, per):
        if len(part) == per:
            full = full or multi_row(sql, row, per)
            stmt = full
        else:
            stmt = multi_row(sql, row, len(part))
        conn.execute(stmt, [x for r in part for x in r])


class OneHopAppender(OneHopConnection):
    thread_name = "pushgate-sqlite-append"
    pragmas = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")
    # the inline connection never checkpoints on commit (a checkpoint copies pages into
    # the database file and syncs it): the worker thread does, under the store's write
    # lock, before the append that follows ~CHECKPOINT_PAGES pages written inline
    # (SQLite's own default threshold), estimated as PAGES_PER_COMMIT for a commit (the
    # inbox, index and expiry pages it touches anyway), PAGES_PER_EVENT per event (its
    # user's inbox row and events index entry, on pages of their own) and the bodies'
    # bytes in pages of PAGE_BYTES (large bodies take overflow pages)
    inline_pragmas = ("PRAGMA wal_autocheckpoint=0",)
    CHECKPOINT_PAGES = 1000
    PAGES_PER_COMMIT = 4
    PAGES_PER_EVENT = 2
    PAGE_BYTES = 4096

    def __init__(self, path: str, busy_timeout_ms: int, allocate: tuple[str, str],
                 insert: str, insert_expiries: str, max_params: int) -> None:
        super().__init__(path, busy_timeout_ms)
        self.allocate_sql, self.allocate_row = allocate
        self.insert_sql = insert
        self.expiry_sql = insert_expiries
        self.max_params = max_params
        self._since_checkpoint = 0  # pages (estimated) written inline since a checkpoint

    def _append(self, conn: sqlite3.Connection, alloc: list[tuple[Any, ...]],
                make_rows: Any) -> Any:
        """One transaction on ``conn``. ``make_rows(heads)`` returns the event rows to
        insert once the seqs are known. sqlite3 errors propagate (rolled back)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            heads: dict[str, int] = {}
            returning = " RETURNING user_id, head_seq"
            per = max(1, self.max_params // len(alloc[0]))
            for part in chunks(alloc, per):
                params = tuple(x for r in part for x in r)
                sql = multi_row(self.allocate_sql, self.allocate_row, len(part)) + returning
                heads.update(conn.execute(sql, params).fetchall())
            rows, result = make_rows(heads)
            conn.executemany(self.insert_sql, rows)
            conn.executemany(self.expiry_sql, expiry_rows(rows))
            conn.execute("COMMIT")
            return result
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def append(self, alloc: Sequence[tuple[Any, ...]], make_rows: Any,
                     events: int, body_bytes: int) -> Any:
        """Allocate ``alloc`` and insert ``make_rows``' rows (``events`` of them, their
        bodies ``body_bytes`` long in all) in one transaction: on the loop when small
        (see :mod:`._sqlite_hop`). The caller holds the store's write lock."""
        args = (list(alloc), make_rows)
        done, result = self._try_inline(events, self._append, args)
        if not done:
            return await self._call(self._on_thread, self._append, args)
        self._since_checkpoint += (self.PAGES_PER_COMMIT + self.PAGES_PER_EVENT * events
                                   + body_bytes // self.PAGE_BYTES)
        return result

    def _tx(self, conn: sqlite3.Connection, fn: Any, *args: Any) -> Any:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn, *args)
            conn.execute("COMMIT")
            return result
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def transaction(self, fn: Any, *args: Any) -> Any:
        """``fn(conn, *args)`` in one write transaction on the worker thread's connection
        (the caller holds the store's write lock)."""
        return await self._call(self._on_thread, self._tx, (fn, *args))

    # -- checkpoints of the inline commits -------------------------------------------

    def checkpoint_due(self) -> bool:
        return self._since_checkpoint >= self.CHECKPOINT_PAGES

    async def checkpoint(self) -> None:
        """Copy the WAL into the database on the worker thread. The caller holds the
        store's write lock, as in SQLite's own checkpoint-on-commit: with no commit
        running meanwhile the checkpoint completes and the next commit starts the WAL
        file over, so it stays at a few MB."""
        self._since_checkpoint = 0
        try:
            await self._call(self._checkpoint)
        except Exception as exc:  # the next one tries again
            log.warning("sqlite WAL checkpoint failed: %r", exc)

    def _checkpoint(self) -> None:
        self._connect().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
