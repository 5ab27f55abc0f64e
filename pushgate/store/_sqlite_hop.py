"""One plain ``sqlite3`` connection on its own worker thread, and a second one on the
event loop for small work: the base of the one-hop appender (:mod:`._sqlite_append`)
and reader (:mod:`._sqlite_read`). Each operation is a single call, instead of the
several event-loop/driver hand-offs that a transaction through SQLAlchemy + aiosqlite
takes.

**Small work runs on the event loop** (docs/design-notes.md §17). A call to the worker
thread costs ~45 µs of CPU (the executor's queue, the thread's wake-up, the GIL handed
over twice, the loop woken through its self-pipe): more than a whole append of a few
events or a one-row read. So an operation over at most :attr:`OneHopConnection.inline_max`
items runs right away on the *inline* connection, which never waits for a lock
(``busy_timeout=0``): when another connection or process holds the write lock, SQLite
answers ``SQLITE_BUSY`` at once and the operation goes to the worker thread, whose
connection waits up to the store's busy timeout as before. Larger operations (a
campaign's thousands of events, a long backlog) always take the thread, so the loop
is never held by them, and on a multi-core host their SQLite work runs beside it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED (any extended code): another connection holds a lock
    this one would have to wait for."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class OneHopConnection:
    thread_name: ClassVar[str] = "pushgate-sqlite"
    pragmas: ClassVar[tuple[str, ...]] = ()  # besides busy_timeout
    inline_pragmas: ClassVar[tuple[str, ...]] = ()  # the inline connection's, besides those
    #: operations over at most this many items (events, users, rows) run on the loop
    inline_max: ClassVar[int] = 64

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=self.thread_name)
        self._conn: sqlite3.Connection | None = None
        self._inline_conn: sqlite3.Connection | None = None

    def _open(self, busy_timeout_ms: int, extra: tuple[str, ...]) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=busy_timeout_ms / 1000)
        for pragma in (*self.pragmas, *extra, f"PRAGMA busy_timeout={int(busy_timeout_ms)}"):
            conn.execute(pragma)
        return conn

    def _connect(self) -> sqlite3.Connection:
        """In the worker thread: the connection, opened on first use."""
        if self._conn is None:
            self._conn = self._open(self.busy_timeout_ms, ())
        return self._conn

    def _inline(self) -> sqlite3.Connection:
        """On the loop: the inline connection (never waits for a lock), opened on first use."""
        if self._inline_conn is None:
            self._inline_conn = self._open(0, self.inline_pragmas)
        return self._inline_conn

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _try_inline(self, items: int, fn: Callable[..., Any],
                    args: tuple[Any, ...]) -> tuple[bool, Any]:
        """``(True, fn(conn, *args))`` on the loop's connection, or ``(False, None)`` when
        ``items`` is too many or a lock is in the way. ``fn`` must leave nothing behind
        when it raises (roll back), since a busy attempt is run again on the thread."""
        if items > self.inline_max:
            return False, None
        try:
            return True, fn(self._inline(), *args)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            return False, None

    async def _submit(self, items: int, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(conn, *args)``: on the loop when ``items`` is small and no lock is in the
        way, else on the worker thread."""
        done, result = self._try_inline(items, fn, args)
        if done:
            return result
        return await self._call(self._on_thread, fn, args)

    def _on_thread(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return fn(self._connect(), *args)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        if self._inline_conn is not None:
            self._inline_conn.close()
            self._inline_conn = None
        await self._call(self._close)
        self._pool.shutdown(wait=True)
