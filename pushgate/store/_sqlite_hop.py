"""One plain ``sqlite3`` connection on its own worker thread: the base of the one-hop
appender (:mod:`._sqlite_append`) and reader (:mod:`._sqlite_read`). Each operation is
a single call to that thread, instead of the several event-loop/driver hand-offs that a
transaction through SQLAlchemy + aiosqlite takes."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar


class OneHopConnection:
    thread_name: ClassVar[str] = "pushgate-sqlite"
    pragmas: ClassVar[tuple[str, ...]] = ()  # besides busy_timeout

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=self.thread_name)
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        """In the worker thread: the connection, opened on first use."""
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=self.busy_timeout_ms / 1000)
            for pragma in (*self.pragmas, f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}"):
                conn.execute(pragma)
            self._conn = conn
        return self._conn

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        await self._call(self._close)
        self._pool.shutdown(wait=True)
