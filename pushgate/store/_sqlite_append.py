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

import asyncio
import concurrent.futures
import logging
import os
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
    # the database file and syncs it): the worker thread does, in two steps (see
    # checkpoint_step), after ~CHECKPOINT_PAGES pages written inline
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
        # the background step of a checkpoint; a thread's future: done as soon as the thread
        # finished, even while a run of inline appends keeps the loop from its callbacks
        self._bulk: concurrent.futures.Future[None] | None = None
        # (st_dev, st_ino) of the database file and of its WAL as this store opened and
        # wrote them: a file deleted or replaced under the open connections keeps taking
        # commits (into an unlinked inode) that no restart will find, so every append
        # checks after its commit (two stat calls, ~1 us each) and fails retryably
        # (StoreUnavailable: 503 store_unavailable) instead
        self._db_id: tuple[int, int] | None = None
        self._wal_id: tuple[int, int] | None = None
        # once a file is lost, every later write is refused too, until a restart: a retry
        # of the send refused then found its event (committed into the lost file) and was
        # answered 200 duplicate, and read marks and devices were written there with 200
        self.lost: str | None = None

    def _open(self, busy_timeout_ms: int, extra: tuple[str, ...]) -> sqlite3.Connection:
        conn = super()._open(busy_timeout_ms, extra)
        if self._db_id is None:
            st = os.stat(self.path)
            self._db_id = (st.st_dev, st.st_ino)
        return conn

    def lost_files(self) -> str | None:
        """What makes this store refuse writes (a message), or None: the database file or
        its WAL is no longer the one the connections write to (now or before)."""
        try:
            self._check_files()
        except sqlite3.OperationalError as e:
            return str(e)
        return None

    def _check_files(self) -> None:
        """Raise ``sqlite3.OperationalError`` (-> StoreUnavailable, 503) when the database
        file or its WAL is no longer the one the connections write to (now or before)."""
        if self.lost is not None:
            raise sqlite3.OperationalError(self.lost)
        for name, known in ((self.path, self._db_id), (self.path + "-wal", self._wal_id)):
            if known is None:
                continue
            try:
                st = os.stat(name)
            except FileNotFoundError:
                msg = f"{name} was deleted while the store had it open"
            else:
                if (st.st_dev, st.st_ino) == known:
                    continue
                msg = f"{name} was replaced while the store had it open"
            log.error("sqlite file lost: %s; refusing writes", msg)
            self.lost = f"{msg}: refusing to write (restart the gateway)"
            raise sqlite3.OperationalError(self.lost)

    def _note_wal(self) -> None:
        if self._wal_id is None:
            try:
                st = os.stat(self.path + "-wal")
            except FileNotFoundError:
                return
            self._wal_id = (st.st_dev, st.st_ino)

    def _append(self, conn: sqlite3.Connection, alloc: list[tuple[Any, ...]],
                make_rows: Any) -> Any:
        """One transaction on ``conn``. ``make_rows(heads)`` returns the event rows to
        insert once the seqs are known. sqlite3 errors propagate (rolled back)."""
        result = self._tx(conn, self._write_events, alloc, make_rows)
        self._note_wal()
        self._check_files()  # a file lost before or during the commit: not durable
        return result

    def _write_events(self, conn: sqlite3.Connection, alloc: list[tuple[Any, ...]],
                      make_rows: Any) -> Any:
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
        return result

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
        if self.lost is not None:
            raise sqlite3.OperationalError(self.lost)
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

    async def checkpoint_step(self) -> None:
        """Called before each append, under the store's write lock. A checkpoint copies the
        WAL into the database file in two steps, so that appends do not wait for the copy:

        1. once ~CHECKPOINT_PAGES pages were written inline, a passive checkpoint starts on
           the worker thread and this returns at once: appends go on meanwhile (a
           checkpoint does not block writers in WAL mode), the bulk of the WAL is copied;
        2. at the first append after it finished, a second passive checkpoint runs on the
           thread while the caller holds the write lock: it copies only what was committed
           during step 1, reaches the WAL's end with no commit in between, and the next
           commit starts the WAL file over (so it stays at a few MB; a checkpoint that
           always runs beside commits never reaches the end, and the WAL only grows).
        """
        bulk = self._bulk
        if bulk is None:
            if self._since_checkpoint >= self.CHECKPOINT_PAGES:
                self._since_checkpoint = 0
                self._bulk = self._pool.submit(self._checkpoint)
            return
        if not bulk.done():
            return
        self._bulk = None
        if bulk.exception() is not None:  # the next round tries again
            log.warning("sqlite WAL checkpoint failed: %r", bulk.exception())
            return
        await self.checkpoint()

    async def checkpoint(self) -> None:
        """Copy the WAL into the database on the worker thread (the caller holds the
        store's write lock)."""
        try:
            await self._call(self._checkpoint)
        except Exception as exc:  # the next one tries again
            log.warning("sqlite WAL checkpoint failed: %r", exc)

    def _checkpoint(self) -> None:
        self._connect().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    async def close(self) -> None:
        bulk, self._bulk = self._bulk, None
        if bulk is not None:  # (its failure does not matter any more)
            await asyncio.wait((asyncio.wrap_future(bulk),))
        await super().close()
