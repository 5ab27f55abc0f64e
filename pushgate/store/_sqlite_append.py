"""SQLite appends in one thread hop.

Through SQLAlchemy + aiosqlite a group commit makes ~6 hand-offs between the event
loop and the driver's thread (BEGIN, allocate, insert, cursor closes, COMMIT), each a
thread wake-up and a GIL switch: at a few events per batch (the embedded gateway's
unicast load) that was a quarter of the event loop's CPU. :class:`OneHopAppender` owns
one plain ``sqlite3`` connection (same PRAGMAs) on one worker thread and runs a whole
append transaction (``BEGIN IMMEDIATE``, allocate with ``RETURNING``, insert the events
and their ``expiries`` rows, ``COMMIT``)
in a single call to that thread. SQLite serializes it with every other writer of the
file exactly as before (``BEGIN IMMEDIATE`` + busy timeout; the store's write lock in
the process).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._dialects import chunks, multi_row
from ._sqlite_hop import OneHopConnection
from .expiry import expiry_rows


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

    def __init__(self, path: str, busy_timeout_ms: int, allocate: tuple[str, str],
                 insert: str, insert_expiries: str, max_params: int) -> None:
        super().__init__(path, busy_timeout_ms)
        self.allocate_sql, self.allocate_row = allocate
        self.insert_sql = insert
        self.expiry_sql = insert_expiries
        self.max_params = max_params

    def _run(self, alloc: list[tuple[Any, ...]], make_rows: Any) -> Any:
        """In the worker thread: one transaction. ``make_rows(heads)`` returns the event
        rows to insert once the seqs are known. sqlite3 errors propagate (rolled back)."""
        conn = self._connect()
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

    async def append(self, alloc: Sequence[tuple[Any, ...]], make_rows: Any) -> Any:
        return await self._call(self._run, list(alloc), make_rows)

    def _run_tx(self, fn: Any, *args: Any) -> Any:
        conn = self._connect()
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
        """``fn(conn, *args)`` in one write transaction on this thread's connection (the
        caller holds the store's write lock)."""
        return await self._call(self._run_tx, fn, *args)
