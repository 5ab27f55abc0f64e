"""SQLite through aiosqlite: one writer per process, ``BEGIN IMMEDIATE`` against other
processes, ``ON CONFLICT`` upserts, executemany with bound parameters."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Insert, Table, bindparam, delete, event, func
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .base import Dialect, chunks

_WRITE = "pushgate_write"  # execution option marking a write transaction


class SQLite(Dialect):
    name = "sqlite"
    exclusive_writer = True

    def __init__(self, busy_timeout_ms: int = 5000, **_ignored: Any) -> None:
        super().__init__()
        self.busy_timeout_ms = busy_timeout_ms

    def set_wal(self, path: str) -> None:
        """Put the database file at ``path`` in WAL mode (persistent: once per file), waiting
        up to ``busy_timeout_ms`` for other connections. Blocking: run it in a thread.

        Changing the journal mode fails at once with "database is locked" while another
        connection holds a lock -- SQLite's busy handler does not cover it -- so processes
        that create one file at the same moment (three rollouts migrating a fresh database)
        retry here, before any engine connects."""
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        while True:
            conn = sqlite3.connect(path, timeout=self.busy_timeout_ms / 1000)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
            finally:
                conn.close()
            time.sleep(0.01)

    def configure(self, engine: AsyncEngine) -> None:
        timeout = f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}"

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take BEGIN away from the sqlite3 module (it skips it before SELECT and DDL)
            # and emit it ourselves in _on_begin: real transactions, BEGIN IMMEDIATE writes.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute(timeout)
            # migrate() set WAL already (set_wal); setting it again on every connection
            # failed "database is locked" while another process held a lock on the file
            cursor.execute("PRAGMA journal_mode")
            if cursor.fetchone()[0] not in ("wal", "memory"):
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            # Reads are single statements, atomic on their own in autocommit mode: no
            # BEGIN saves a round trip to the aiosqlite thread.
            if conn.get_execution_options().get(_WRITE, False):
                conn.exec_driver_sql("BEGIN IMMEDIATE")

    def write_engine(self, engine: AsyncEngine) -> AsyncEngine:
        return engine.execution_options(**{_WRITE: True})

    def _allocate_stmt(self, table: Table) -> Insert:
        stmt = sqlite.insert(table)
        ex = stmt.excluded
        return stmt.on_conflict_do_update(
            index_elements=[table.c.user_id],
            set_={
                "head_seq": table.c.head_seq + ex.head_seq,
                "live": table.c.live + ex.live,
                "updated_at": ex.updated_at,
            },
        )

    def upsert_inboxes(self, table: Table) -> Insert:
        stmt = sqlite.insert(table)
        ex = stmt.excluded
        return stmt.on_conflict_do_update(
            index_elements=[table.c.user_id],
            set_={"head_seq": ex.head_seq, "live": ex.live, "updated_at": ex.updated_at},
        )

    async def find_ids(
        self, conn: AsyncConnection, table: Table, pairs: Sequence[tuple[str, str]]
    ) -> list[tuple[Any, ...]]:
        found: list[tuple[Any, ...]] = []
        for part in chunks(pairs, self.max_params // 2):
            values = ", ".join(["(?, ?)"] * len(part))
            # CROSS JOIN fixes the loop order: one unique-index probe per pair.
            sql = (
                f"WITH v(u, m) AS (VALUES {values}) "
                f"SELECT e.user_id, e.msg_id, e.seq, e.created_at, e.expires_at "
                f"FROM v CROSS JOIN {table.name} AS e ON e.user_id = v.u AND e.msg_id = v.m"
            )
            params = tuple(x for pair in part for x in pair)
            found.extend(tuple(r) for r in await conn.exec_driver_sql(sql, params))
        return found

    async def delete_events(
        self, conn: AsyncConnection, table: Table, keys: Sequence[tuple[str, int]]
    ) -> int:
        stmt = delete(table).where(
            table.c.user_id == bindparam("b_user"), table.c.seq == bindparam("b_seq")
        )
        if not keys:
            return 0
        result = await conn.execute(stmt, [{"b_user": u, "b_seq": s} for u, s in keys])
        return result.rowcount

    def upsert_device(self, table: Table) -> Insert:
        stmt = sqlite.insert(table)
        ex = stmt.excluded
        return stmt.on_conflict_do_update(
            index_elements=[table.c.platform, table.c.token],
            set_={"user_id": ex.user_id, "app": ex.app, "updated_at": ex.updated_at},
        )

    def upsert_acks(self, table: Table) -> Insert:
        stmt = sqlite.insert(table)
        ex = stmt.excluded
        return stmt.on_conflict_do_update(
            index_elements=[table.c.user_id],
            set_={"acked_seq": func.max(table.c.acked_seq, ex.acked_seq),
                  "updated_at": ex.updated_at},
        )
