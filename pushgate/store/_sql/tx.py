"""Transactions of the SQL store, and how database errors become store errors.

:class:`SqlTransactions` is the base of every part of
:class:`~pushgate.store.sql.SqlEventStore`: it declares the store's state (set by the
store's constructor) and runs its transactions. Error mapping: connection loss and
timeouts raise :class:`StoreUnavailable` (retryable); a transaction rolled back by a lock
conflict raises :class:`_Conflict` inside, which :meth:`SqlTransactions._write` runs
again up to ``max_attempts`` times before giving up with :class:`StoreUnavailable`;
other database errors raise :class:`StoreError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .._dialects import Dialect
from .._sqlite_append import OneHopAppender
from .._sqlite_read import OneHopReader
from ..base import StoreError, StoreUnavailable

T = TypeVar("T")


class _Conflict(StoreUnavailable):
    """The transaction was rolled back by a lock conflict; running it again may succeed."""


class _StoreIdExists(Exception):
    """Optimistic append: an idempotency id of the batch is already stored."""


def _describe(exc: sa_exc.SQLAlchemyError) -> str:
    """The driver's message without the (possibly huge) SQL and parameters."""
    orig = getattr(exc, "orig", None)
    return f"{type(orig or exc).__name__}: {orig or exc}"


@contextlib.contextmanager
def _mapped_errors(dialect: Dialect) -> Iterator[None]:
    try:
        yield
    except sa_exc.DBAPIError as exc:
        if dialect.is_conflict(exc):
            raise _Conflict(_describe(exc)) from exc
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            raise StoreUnavailable(_describe(exc)) from exc
        raise StoreError(_describe(exc)) from exc
    except sa_exc.TimeoutError as exc:  # no pooled connection free in time
        raise StoreUnavailable(_describe(exc)) from exc
    except sa_exc.SQLAlchemyError as exc:
        raise StoreError(_describe(exc)) from exc
    except OSError as exc:  # e.g. the SQLite file's directory is not writable
        raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc


@contextlib.contextmanager
def _sqlite_errors() -> Iterator[None]:
    """sqlite3's own errors (the one-hop appender and reader) as store errors."""
    try:
        yield
    except sqlite3.OperationalError as exc:  # locked, disk, I/O: retryable
        raise StoreUnavailable(f"OperationalError: {exc}") from exc
    except sqlite3.Error as exc:
        raise StoreError(f"{type(exc).__name__}: {exc}") from exc
    except OSError as exc:
        raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc


class SqlTransactions:
    """The state every part of the store shares (set by
    :meth:`SqlEventStore.__init__ <pushgate.store.sql.SqlEventStore>`) and its
    transaction runners."""

    _dialect: Dialect
    _clock: Callable[[], float]
    _engine: AsyncEngine | None
    _writer: AsyncEngine | None
    _write_lock: asyncio.Lock
    max_attempts: int
    retry_base_s: float
    conflicts: int
    _one_hop: OneHopAppender | None
    _reader: OneHopReader | None

    @contextlib.asynccontextmanager
    async def _tx(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        """One transaction; commits if the body returns, rolls back if it raises."""
        engine = self._writer if write else self._engine
        if engine is None:
            raise StoreUnavailable("event store is not started or already closed")
        exclusive = write and self._dialect.exclusive_writer
        if write and self._one_hop is not None and (lost := self._one_hop.lost_files()):
            raise StoreUnavailable(lost)  # (read marks, devices: as appends)
        with _mapped_errors(self._dialect):
            async with self._write_lock if exclusive else contextlib.nullcontext():
                async with engine.begin() as conn:
                    yield conn

    async def _write(self, body: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``body`` in a write transaction; run it again (after a jittered, growing
        pause) when a lock conflict rolled it back."""
        delay = self.retry_base_s
        for attempt in range(1, self.max_attempts + 1):
            try:
                async with self._tx(write=True) as conn:
                    return await body(conn)
            except _Conflict as exc:
                if attempt == self.max_attempts:
                    raise StoreUnavailable(
                        f"{exc} (gave up after {attempt} attempts)"
                    ) from exc
                self.conflicts += 1
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay *= 2
        raise AssertionError("unreachable")
