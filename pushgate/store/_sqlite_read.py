"""SQLite reads of the connect path in one thread hop.

Every new session reads its user's inbox state for ``hello`` (and, with ``?after=``,
its backlog). Through SQLAlchemy + aiosqlite one such read is a transaction (begin,
execute, fetch, rollback, close: ~5 hand-offs between the event loop and the driver's
thread, and SQLAlchemy's statement handling): profiled, ~40 % of the CPU of opening a
session in embedded mode. :class:`OneHopReader` owns one plain ``sqlite3`` connection
(``query_only``) on its own worker thread and runs each read in a single call to that
thread, or, for a read of a few users or rows, right away on the loop's own connection
(:mod:`._sqlite_hop`). WAL mode lets it read while the appender writes; each read sees
the commits that preceded it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from ._dialects import chunks
from ._sqlite_hop import OneHopConnection

_STATES = "SELECT user_id, head_seq, live, read_bitmap FROM inboxes WHERE user_id IN ({})"
_FETCH = ("SELECT seq, msg_id, body, created_at, expires_at FROM events "
          "WHERE user_id = ? AND seq > ? AND expires_at > ? ORDER BY seq LIMIT ?")


class OneHopReader(OneHopConnection):
    thread_name = "pushgate-sqlite-read"
    pragmas = ("PRAGMA query_only=ON",)

    def __init__(self, path: str, busy_timeout_ms: int, max_params: int) -> None:
        super().__init__(path, busy_timeout_ms)
        self.max_params = max_params

    def _states(self, conn: sqlite3.Connection, users: list[str]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        for part in chunks(users, self.max_params):
            sql = _STATES.format(",".join("?" * len(part)))
            rows.extend(conn.execute(sql, tuple(part)).fetchall())
        return rows

    def _fetch(self, conn: sqlite3.Connection, user: str, after: int, now: float,
               limit: int) -> list[tuple[Any, ...]]:
        return conn.execute(_FETCH, (user, after, now, limit)).fetchall()

    async def read_states(self, users: Sequence[str]) -> list[tuple[Any, ...]]:
        """``(user_id, head_seq, live, read_bitmap)`` of the users that have an inbox."""
        rows: list[tuple[Any, ...]] = await self._submit(len(users), self._states, list(users))
        return rows

    async def fetch(self, user: str, after: int, now: float, limit: int) -> list[tuple[Any, ...]]:
        """``(seq, msg_id, body, created_at, expires_at)`` of ``user``'s events after
        ``after`` that are unexpired at ``now``, oldest first, at most ``limit``."""
        rows: list[tuple[Any, ...]] = await self._submit(limit, self._fetch, user, after, now,
                                                         limit)
        return rows
