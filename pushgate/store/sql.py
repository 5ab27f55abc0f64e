"""The SQL store: SQLAlchemy async Core on SQLite (aiosqlite, embedded mode) or
MySQL/MariaDB (asyncmy, cluster). Implements :class:`~pushgate.store.base.EventStore`,
:class:`~pushgate.store.base.Leases`, :class:`~pushgate.store.base.DeviceStore` and
:class:`~pushgate.store.base.PushOutbox` (in ``outbox.py``) and
:class:`~pushgate.store.base.ReportStore` (in ``_sql/reports.py``).

Every method runs in one transaction. Writes read-modify-write the user's inbox row
under a write lock: on SQLite one write transaction at a time per store (an asyncio
lock) opened with ``BEGIN IMMEDIATE`` (so other processes on the same file wait, up to
the busy timeout); on MySQL row locks, always taken in user order. Portable SQL lives
here, the differences in ``_dialects/``.

Append, the hot path, is optimistic: one upsert adds each user's event count to its
``head_seq`` (allocating a dense range of seqs and locking the row), then one
multi-row INSERT stores the events. A stored idempotency id makes that INSERT fail on
the ``(user_id, msg_id)`` unique index; the transaction is rolled back and the batch
goes the careful way (lock the inboxes, look the ids up, then allocate). Either way
the seqs of a user are allocated under its row lock, in the transaction that stores
the events: strictly increasing, never reused, gap-free.

Errors: connection loss and timeouts raise :class:`StoreUnavailable` (retryable). A
transaction rolled back by a lock conflict (deadlock, lock wait timeout) is run again
up to ``max_attempts`` times with jittered exponential backoff, then
:class:`StoreUnavailable`. Other database errors raise :class:`StoreError`; invalid
arguments raise ``ValueError`` before any I/O.

This module holds the store's constructor and lifecycle; its methods live in the
mixins of :mod:`pushgate.store._sql` (transactions and errors, append, reads, read
state, cleanup, devices, leases) and :mod:`pushgate.store.outbox`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import select, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ._dialects import SQLite, for_url, normalize_url, prepare_path, sqlite_file
from ._pool_log import quiet_pool
from ._sql.append import SqlAppend, _insert_events, _insert_expiries
from ._sql.cleanup import SqlCleanup
from ._sql.devices import SqlDevices
from ._sql.leases import SqlLeases
from ._sql.read_state import SqlReadState
from ._sql.reads import SqlReads
from ._sql.reports import SqlReports
from ._sql.tx import _describe, _mapped_errors, _sqlite_errors
from ._sqlite_append import OneHopAppender
from ._sqlite_read import OneHopReader
from .base import ReadState, StoreError
from .outbox import SqlOutbox
from .schema import REVISION
from .schema import devices as devices_t
from .schema import events as events_t
from .schema import expiries as expiries_t
from .schema import inboxes as inboxes_t
from .schema import leases as leases_t
from .schema import push_acks as push_acks_t
from .schema import push_outbox as push_outbox_t
from .schema import report_expiries as report_expiries_t
from .schema import report_reasons as report_reasons_t
from .schema import reports as reports_t


async def _check_schema(conn: AsyncConnection) -> None:
    try:
        found = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    except sa_exc.DBAPIError as exc:
        raise StoreError(
            f"event store schema missing ({_describe(exc)}): run 'pushgate migrate' first "
            f"(docs/storage.md)"
        ) from exc
    if found is None or (str(found).isdigit() and int(found) < int(REVISION)):
        raise StoreError(
            f"event store schema outdated (revision {found}, this version needs {REVISION}): "
            f"run 'pushgate migrate' first (docs/storage.md)")
    try:
        for table in (inboxes_t, events_t, expiries_t, leases_t, devices_t, push_outbox_t,
                      push_acks_t, reports_t, report_reasons_t, report_expiries_t):
            # every column: a database a migration behind (e.g. 0003 without the outbox's
            # group columns of 0004) fails here, not at its first claim
            await conn.execute(select(*table.columns).limit(0))
    except sa_exc.DBAPIError as exc:
        raise StoreError(
            f"event store schema missing or outdated ({_describe(exc)}): run "
            f"'pushgate migrate' first (docs/storage.md)"
        ) from exc


def _probe_write(conn: Any) -> None:
    """Write one row and take it back (in the caller's transaction): raises
    ``sqlite3.OperationalError`` ("attempt to write a readonly database") when the file
    cannot be written."""
    conn.execute("SAVEPOINT pushgate_probe")
    try:
        conn.execute("INSERT INTO leases (name, holder, expires_at) "
                     "VALUES ('pushgate-write-probe', '', 0)")
    finally:
        conn.execute("ROLLBACK TO pushgate_probe")
        conn.execute("RELEASE pushgate_probe")


class SqlEventStore(SqlAppend, SqlReads, SqlReports, SqlReadState, SqlCleanup, SqlDevices,
                    SqlLeases, SqlOutbox):  # SqlReports first: it implements their hooks
    """The store on a SQLAlchemy async engine.

    ``url``: ``sqlite+aiosqlite:///path/events.db`` or ``mysql+asyncmy://...`` (a bare
    ``sqlite://`` / ``mysql://`` gets the async driver). ``clock`` gives unix seconds for
    ``created_at``/``expires_at``, TTL filtering and leases (injectable for tests).
    ``engine_options`` are passed to ``create_async_engine`` (pool size, echo, ...) over
    the dialect's defaults (MySQL: pre-ping, recycle, READ COMMITTED, timeouts).
    ``max_attempts``: runs of a write transaction rolled back by lock conflicts.
    ``one_hop_append``: on a SQLite file, run appends on a dedicated ``sqlite3``
    connection in one thread hop (:mod:`pushgate.store._sqlite_append`).
    ``dialect_options``: MySQL ``connect_timeout_s``, ``read_timeout_s``,
    ``lock_wait_timeout_s``, ``pool_recycle_s``.
    The schema must exist: run :func:`pushgate.store.migrate` first.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_ms: int = 5000,
        engine_options: Mapping[str, Any] | None = None,
        max_attempts: int = 5,
        retry_base_s: float = 0.005,
        one_hop_append: bool = True,
        **dialect_options: Any,
    ) -> None:
        if max_attempts < 1 or retry_base_s < 0:
            raise ValueError("max_attempts must be >= 1 and retry_base_s >= 0")
        self.url = normalize_url(url)
        self._dialect = for_url(self.url, busy_timeout_ms=busy_timeout_ms, **dialect_options)
        self._clock = clock
        self._engine_options = dict(engine_options or {})
        self._engine: AsyncEngine | None = None
        self._writer: AsyncEngine | None = None
        self._write_lock = asyncio.Lock()
        self.max_attempts = max_attempts
        self.retry_base_s = retry_base_s
        self.conflicts = 0  # transactions rolled back by lock conflicts and run again
        self.slow_appends = 0  # appends that found a stored idempotency id
        self._one_hop_enabled = one_hop_append
        self._one_hop: OneHopAppender | None = None
        self._reader: OneHopReader | None = None
        # read_state coalescing: user -> callers waiting for the next shared query
        self._state_waiters: dict[str, list[asyncio.Future[ReadState | None]]] = {}
        self._state_flush_scheduled = False
        self._state_tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Create the engine and check the database: :class:`StoreUnavailable` if it does
        not answer, :class:`StoreError` if the tables are missing (run
        :func:`pushgate.store.migrate` first: ``start`` never creates or migrates the
        schema). Creates a SQLite file's directory."""
        if self._engine is not None:
            return
        with _mapped_errors(self._dialect):
            prepare_path(self.url)
        options = {**self._dialect.engine_options(self.url), **self._engine_options}
        engine = create_async_engine(self.url, **options)
        self._dialect.configure(engine)
        quiet_pool(engine.pool)
        try:
            with _mapped_errors(self._dialect):
                async with engine.connect() as conn:
                    await _check_schema(conn)
                    self._one_hop = self._one_hop_appender(conn)
                    if self._one_hop is not None:  # same conditions: a SQLite file
                        d = self._dialect
                        assert isinstance(d, SQLite)
                        self._reader = OneHopReader(self._one_hop.path, d.busy_timeout_ms,
                                                    d.max_params)
            if self._one_hop is not None:
                # a file SQLite can only open read-only (owned by another user, chattr +i)
                # passes every read above and the (no-op) migration: fail here, not with a
                # 503 on every send of a gateway that says it is ready
                with _sqlite_errors():
                    await self._one_hop.transaction(_probe_write)
        except BaseException:
            if self._one_hop is not None:
                await self._one_hop.close()
            self._one_hop = self._reader = None
            await engine.dispose()
            raise
        self._engine, self._writer = engine, self._dialect.write_engine(engine)

    def _one_hop_appender(self, conn: AsyncConnection) -> OneHopAppender | None:
        """SQLite file databases append through :class:`OneHopAppender` (one thread hop
        per transaction); ``one_hop_append=False`` or an in-memory database: no."""
        d = self._dialect
        path = sqlite_file(self.url)
        if not isinstance(d, SQLite) or not self._one_hop_enabled or path is None:
            return None
        alloc_sql, alloc_row, _ = d._compiled(conn, "allocate",
                                              lambda: d._allocate_stmt(inboxes_t))
        insert_sql, _, _ = d._compiled(conn, "insert_events", _insert_events)
        expiry_sql, _, _ = d._compiled(conn, "insert_expiries", _insert_expiries)
        return OneHopAppender(path, d.busy_timeout_ms, (alloc_sql, alloc_row), insert_sql,
                              expiry_sql, d.max_params)

    async def close(self) -> None:
        """Dispose of the engine; later calls raise :class:`StoreUnavailable`. Idempotent."""
        async with self._write_lock:  # an append in flight finishes first
            engine, self._engine, self._writer = self._engine, None, None
            hop, self._one_hop = self._one_hop, None
            reader, self._reader = self._reader, None
        if hop is not None:
            await hop.close()
        if reader is not None:
            await reader.close()
        if engine is not None:
            await engine.dispose()
