"""The SQL store: SQLAlchemy async Core on SQLite (aiosqlite, embedded mode) or
MySQL/MariaDB (asyncmy, cluster). Implements :class:`~pushgate.store.base.EventStore`,
:class:`~pushgate.store.base.Leases`, :class:`~pushgate.store.base.DeviceStore` and
:class:`~pushgate.store.base.PushOutbox` (in ``outbox.py``).

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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from pyroaring import BitMap
from sqlalchemy import Insert, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from . import bitmap, expiry
from ._dialects import Dialect, SQLite, chunks, for_url, normalize_url, prepare_path
from ._pool_log import quiet_pool
from ._sqlite_append import OneHopAppender
from ._sqlite_read import OneHopReader
from .base import (
    MAX_KEY_LEN,
    Appended,
    Device,
    Event,
    NewEvent,
    ReadState,
    StoreError,
    StoreUnavailable,
    check_device,
    check_new_event,
)
from .outbox import SqlOutbox
from .schema import devices as devices_t
from .schema import events as events_t
from .schema import expiries as expiries_t
from .schema import inboxes as inboxes_t
from .schema import leases as leases_t
from .schema import push_acks as push_acks_t
from .schema import push_outbox as push_outbox_t

T = TypeVar("T")
log = logging.getLogger("pushgate.store")

_EMPTY = bitmap.serialize(BitMap())


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


async def _check_schema(conn: AsyncConnection) -> None:
    try:
        for table in (inboxes_t, events_t, expiries_t, leases_t, devices_t, push_outbox_t,
                      push_acks_t):
            # every column: a database a migration behind (e.g. 0003 without the outbox's
            # group columns of 0004) fails here, not at its first claim
            await conn.execute(select(*table.columns).limit(0))
    except sa_exc.DBAPIError as exc:
        raise StoreError(
            f"event store schema missing or outdated ({_describe(exc)}): run migrate() first"
        ) from exc


class SqlEventStore(SqlOutbox):
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
        except BaseException:
            await engine.dispose()
            raise
        self._engine, self._writer = engine, self._dialect.write_engine(engine)

    def _one_hop_appender(self, conn: AsyncConnection) -> OneHopAppender | None:
        """SQLite file databases append through :class:`OneHopAppender` (one thread hop
        per transaction); ``one_hop_append=False`` or an in-memory database: no."""
        d = self._dialect
        path = self.url.database
        if not isinstance(d, SQLite) or not self._one_hop_enabled or not path \
                or path == ":memory:" or path.startswith("file:"):
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

    @contextlib.asynccontextmanager
    async def _tx(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        """One transaction; commits if the body returns, rolls back if it raises."""
        engine = self._writer if write else self._engine
        if engine is None:
            raise StoreUnavailable("event store is not started or already closed")
        exclusive = write and self._dialect.exclusive_writer
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

    # -- events: writes --------------------------------------------------------------

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
            with _sqlite_errors():
                try:
                    results: list[Appended] = await hop.append(alloc, make_rows)
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
        seen = {(r[0], r[1]): (r[2], r[3]) for r in await d.find_ids(conn, events_t, pairs)}
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

    async def mark_read(
        self, user: str, seqs: Sequence[int], ranges: Sequence[tuple[int, int]]
    ) -> ReadState:
        """See :meth:`EventStore.mark_read`. Seqs are clipped to ``[1, head]`` and kept only
        if stored and unexpired. ``ValueError`` on an inverted range or more than
        ``bitmap.DEFAULT_MAX_SIZE`` seqs after clipping; ``KeyError(user)`` if no inbox."""
        now = self._clock()

        async def body(conn: AsyncConnection) -> ReadState:
            ib = inboxes_t.c
            stmt = select(ib.head_seq, ib.live, ib.read_bitmap).where(ib.user_id == user)
            row = (await conn.execute(self._dialect.lock(stmt, inboxes_t))).first()
            if row is None:
                raise KeyError(user)
            read = bitmap.deserialize(row.read_bitmap)
            wanted = bitmap.build(seqs, ranges, hi=row.head_seq) - read
            found = wanted & await self._live_seqs(conn, user, wanted, now) if wanted else BitMap()
            blob = row.read_bitmap
            if found:
                read |= found
                blob = bitmap.serialize(read)
                await conn.execute(
                    update(inboxes_t)
                    .where(ib.user_id == user)
                    .values(read_bitmap=blob, updated_at=now)
                )
            return ReadState(
                head=row.head_seq, live=row.live, unread=row.live - len(read), read=blob
            )

        return await self._write(body)

    async def cleanup_expired(self, now: float, batch: int) -> int:
        """See :meth:`EventStore.cleanup_expired`. Reads the soonest-expired
        ``expiries`` rows (primary-key order = expiry order; locked, skipping rows another
        cleaner holds), takes their events up to ``batch`` (a row it takes only part of is
        replaced by one listing the rest), deletes those events by primary key and fixes
        each affected inbox's ``live`` and read bitmap, all in one transaction."""
        if batch <= 0:
            return 0

        async def body(conn: AsyncConnection) -> int:
            taken = await self._expired_groups(conn, now, batch)
            if not taken:
                return 0
            d = self._dialect
            x = expiries_t.c
            keys: list[tuple[str, int]] = []
            rest: list[tuple[float, str, int, int, bytes]] = []
            want = batch
            for row in taken:
                runs = expiry.members(row[4])
                part, left = expiry.take(runs, want)
                keys += expiry.keys(part)
                want -= row[3] - sum(r[2] - r[1] + 1 for r in left)
                if left:
                    n = sum(r[2] - r[1] + 1 for r in left)
                    rest.append((row[0], left[0][0], left[0][1], n, expiry.encode(left)))
            gone: dict[str, BitMap] = {}
            for user, seq in keys:
                gone.setdefault(user, BitMap()).add(seq)
            # Events first, inboxes last: the DELETE (random primary-key pages, possibly
            # read from disk) runs before any inbox row is locked, so sends to the same
            # users wait at most for the short inbox update, not for the whole batch.
            deleted = await d.delete_events(conn, events_t, keys)
            await conn.execute(
                delete(expiries_t).where(x.expires_at == bindparam("e"),
                                         x.user_id == bindparam("u"), x.seq == bindparam("s")),
                [{"e": r[0], "u": r[1], "s": r[2]} for r in taken])
            if rest:
                await d.insert_rows(conn, "insert_expiries", _insert_expiries, rest)
            users = sorted(gone)
            bitmaps = await d.release_expired(
                conn, inboxes_t, [(u, len(gone[u])) for u in users], now)
            if deleted != len(keys):  # events gone by other means: count the inboxes again
                log.warning("%d of %d expired events listed for cleanup were already gone; "
                            "recounting their inboxes", len(keys) - deleted, len(keys))
                await self._recount(conn, users)
            changed = []
            for user, blob in bitmaps.items():
                if blob != _EMPTY:
                    read = bitmap.deserialize(blob)
                    kept = read - gone[user]
                    if len(kept) != len(read):
                        changed.append((user, bitmap.serialize(kept)))
            if changed:
                await d.set_read_bitmaps(conn, inboxes_t, changed, now)
            return deleted

        return await self._write(body)

    async def _expired_groups(self, conn: AsyncConnection, now: float,
                              batch: int) -> list[tuple[float, str, int, int, bytes]]:
        """Expired ``expiries`` rows, soonest first, while their events fit ``batch`` plus
        the row that crosses it; read a page at a time (first a few: a row holds up to
        250 events)."""
        x = expiries_t.c
        columns = select(x.expires_at, x.user_id, x.seq, x.n, x.members)
        taken: list[tuple[float, str, int, int, bytes]] = []
        events = 0
        page = min(batch, 16)
        after: tuple[float, str, int] | None = None
        while events < batch:
            cond = x.expires_at <= now
            if after is not None:
                e, u, q = after
                cond = and_(cond, or_(x.expires_at > e,
                                      and_(x.expires_at == e, x.user_id > u),
                                      and_(x.expires_at == e, x.user_id == u, x.seq > q)))
            stmt = self._dialect.lock_skip(
                columns.where(cond).order_by(x.expires_at, x.user_id, x.seq).limit(page))
            rows = [tuple(r) for r in (await conn.execute(stmt)).all()]
            for r in rows:
                taken.append(r)
                events += r[3]
                if events >= batch:
                    break
            if len(rows) < page:
                break
            after = (rows[-1][0], rows[-1][1], rows[-1][2])
            page = max(1, batch - events)
        return taken

    async def _recount(self, conn: AsyncConnection, users: list[str]) -> None:
        ib, ev = inboxes_t.c, events_t.c
        live = select(func.count()).where(ev.user_id == ib.user_id).scalar_subquery()
        await conn.execute(update(inboxes_t).where(ib.user_id.in_(users)).values(live=live))

    # -- events: reads ---------------------------------------------------------------

    async def fetch(self, user: str, after: int, limit: int) -> list[Event]:
        """See :meth:`EventStore.fetch`; expired events are skipped even before cleanup."""
        if limit <= 0:
            return []
        now = self._clock()
        reader = self._reader
        if reader is not None:  # SQLite file: one thread hop
            if self._engine is None:
                raise StoreUnavailable("event store is not started or already closed")
            with _sqlite_errors():
                found = await reader.fetch(user, after, now, limit)
            return [Event(user, *r) for r in found]
        ev = events_t.c
        stmt = (
            select(ev.seq, ev.msg_id, ev.body, ev.created_at, ev.expires_at)
            .where(ev.user_id == user, ev.seq > after, ev.expires_at > now)
            .order_by(ev.seq)
            .limit(limit)
        )
        async with self._tx(write=False) as conn:
            rows = (await conn.execute(stmt)).all()
        return [Event(user, r.seq, r.msg_id, r.body, r.created_at, r.expires_at) for r in rows]

    async def head(self, user: str) -> int | None:
        async with self._tx(write=False) as conn:
            return await conn.scalar(
                select(inboxes_t.c.head_seq).where(inboxes_t.c.user_id == user)
            )

    async def heads(self, users: Sequence[str]) -> dict[str, int]:
        ib = inboxes_t.c
        stmt = select(ib.user_id, ib.head_seq).where(
            ib.user_id.in_(bindparam("users", expanding=True))
        )
        result: dict[str, int] = {}
        async with self._tx(write=False) as conn:
            for part in chunks(list(dict.fromkeys(users)), self._dialect.max_params):
                result.update((r[0], r[1]) for r in await conn.execute(stmt, {"users": list(part)}))
        return result

    async def read_state(self, user: str) -> ReadState:
        """See :meth:`EventStore.read_state`. Concurrent calls (a reconnect storm: every
        new session reads its user's state for ``hello``) are coalesced: the calls made
        in one event-loop iteration share one ``IN`` query, which starts after all of
        them were made (so each sees every commit that preceded its call)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[ReadState | None] = loop.create_future()
        self._state_waiters.setdefault(user, []).append(fut)
        if not self._state_flush_scheduled:
            self._state_flush_scheduled = True
            loop.call_soon(self._start_state_flush)
        state = await fut
        if state is None:
            raise KeyError(user)
        return state

    def _start_state_flush(self) -> None:
        self._state_flush_scheduled = False
        waiters, self._state_waiters = self._state_waiters, {}
        task = asyncio.get_running_loop().create_task(self._flush_states(waiters))
        self._state_tasks.add(task)
        task.add_done_callback(self._state_tasks.discard)

    async def _flush_states(self, waiters: dict[str, list[asyncio.Future[ReadState | None]]]) -> None:
        try:
            states = await self._read_states(list(waiters))
        except BaseException as exc:
            for futs in waiters.values():
                for f in futs:
                    if not f.done():
                        f.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for user, futs in waiters.items():
            for f in futs:
                if not f.done():
                    f.set_result(states.get(user))

    async def _read_states(self, users: list[str]) -> dict[str, ReadState]:
        ib = inboxes_t.c
        out: dict[str, ReadState] = {}
        reader = self._reader
        if reader is not None:  # SQLite file: one thread hop, no SQLAlchemy transaction
            if self._engine is None:
                raise StoreUnavailable("event store is not started or already closed")
            with _sqlite_errors():
                found = await reader.read_states(users)
            for user, head, live, raw in found:
                n_read = len(bitmap.deserialize(raw)) if raw else 0
                out[user] = ReadState(head=head, live=live, unread=live - n_read, read=raw)
            return out
        async with self._tx(write=False) as conn:
            if len(users) == 1:
                stmt = select(ib.user_id, ib.head_seq, ib.live, ib.read_bitmap).where(
                    ib.user_id == users[0])
                rows = list(await conn.execute(stmt))
            else:
                stmt = select(ib.user_id, ib.head_seq, ib.live, ib.read_bitmap).where(
                    ib.user_id.in_(bindparam("users", expanding=True)))
                rows = []
                for part in chunks(users, self._dialect.max_params):
                    rows.extend(await conn.execute(stmt, {"users": list(part)}))
        for user, head, live, raw in rows:
            n_read = len(bitmap.deserialize(raw)) if raw else 0
            out[user] = ReadState(head=head, live=live, unread=live - n_read, read=raw)
        return out

    # -- leases ----------------------------------------------------------------------

    async def acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """See :meth:`Leases.acquire_lease`. ``ValueError`` for an empty or too long
        name/holder or ``ttl_s <= 0``."""
        _check_key("name", name)
        _check_key("holder", holder)
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        now = self._clock()
        c = leases_t.c

        async def body(conn: AsyncConnection) -> bool:
            stmt = select(c.holder, c.expires_at).where(c.name == name)
            row = (await conn.execute(self._dialect.lock(stmt, leases_t))).first()
            if row is None:
                try:
                    async with conn.begin_nested():  # a racing first holder wins
                        await conn.execute(
                            insert(leases_t).values(name=name, holder=holder, expires_at=now + ttl_s)
                        )
                except sa_exc.IntegrityError:
                    return False
                return True
            if row.holder != holder and row.expires_at > now:
                return False
            await conn.execute(
                update(leases_t)
                .where(c.name == name)
                .values(holder=holder, expires_at=now + ttl_s)
            )
            return True

        return await self._write(body)

    async def release_lease(self, name: str, holder: str) -> bool:
        """See :meth:`Leases.release_lease`."""
        c = leases_t.c

        async def body(conn: AsyncConnection) -> bool:
            result = await conn.execute(
                delete(leases_t).where(c.name == name, c.holder == holder)
            )
            return bool(result.rowcount)

        return await self._write(body)

    # -- devices -----------------------------------------------------------------------

    async def register_device(self, user: str, app: str, platform: str, token: str) -> Device:
        """See :meth:`DeviceStore.register_device`."""
        check_device(user, app, platform, token)
        now = self._clock()
        d = self._dialect

        async def body(conn: AsyncConnection) -> Device:
            await d.insert_rows(
                conn, "upsert_device", lambda: d.upsert_device(devices_t),
                [(platform, token, user, app, now)],
            )
            return Device(user, app, platform, token, now)

        return await self._write(body)

    async def remove_device(self, user: str, app: str, platform: str, token: str) -> bool:
        """See :meth:`DeviceStore.remove_device`."""
        check_device(user, app, platform, token)
        c = devices_t.c
        stmt = delete(devices_t).where(
            c.platform == platform, c.token == token, c.user_id == user, c.app == app
        )
        return await self._write(lambda conn: self._rowcount(conn, stmt))

    async def remove_dead_token(self, platform: str, token: str) -> bool:
        """See :meth:`DeviceStore.remove_dead_token`."""
        check_device("-", "-", platform, token)
        c = devices_t.c
        stmt = delete(devices_t).where(c.platform == platform, c.token == token)
        return await self._write(lambda conn: self._rowcount(conn, stmt))

    async def devices(self, users: Sequence[str], app: str | None = None) -> list[Device]:
        """See :meth:`DeviceStore.devices`."""
        async with self._tx(write=False) as conn:
            return await self._devices_in(conn, list(dict.fromkeys(users)), app)

    async def _devices_in(self, conn: AsyncConnection, users: list[str],
                          app: str | None = None) -> list[Device]:
        c = devices_t.c
        stmt = self._dialect.by_index(
            select(c.user_id, c.app, c.platform, c.token, c.updated_at).where(
                c.user_id.in_(bindparam("users", expanding=True))),
            devices_t, "ix_devices_user_id_app")
        if app is not None:
            stmt = stmt.where(c.app == app)
        found: list[Device] = []
        for part in chunks(users, self._dialect.max_params):
            found.extend(Device(*r) for r in await conn.execute(stmt, {"users": list(part)}))
        found.sort(key=lambda d: (d.user, d.app, d.platform, d.token))
        return found

    # -- helpers -------------------------------------------------------------------

    @staticmethod
    async def _rowcount(conn: AsyncConnection, stmt: Any) -> bool:
        return bool((await conn.execute(stmt)).rowcount)

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

    async def _live_seqs(
        self, conn: AsyncConnection, user: str, wanted: BitMap, now: float
    ) -> BitMap:
        """Stored, unexpired seqs of ``user`` among ``wanted``: an ``IN`` list when small,
        else one primary-key range scan over ``[min, max]``."""
        ev = events_t.c
        stmt = select(ev.seq).where(ev.user_id == user, ev.expires_at > now)
        if len(wanted) <= self._dialect.max_params:
            stmt = stmt.where(ev.seq.in_(list(wanted)))
        else:
            stmt = stmt.where(ev.seq.between(wanted.min(), wanted.max()))
        return BitMap(await conn.scalars(stmt))


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
            results.append(Appended(ev.user, results[dup_of[i]].seq, ev.id, now, duplicate=True))
            continue
        seq = next_seq[ev.user]
        next_seq[ev.user] = seq + 1
        rows.append((ev.user, seq, ev.id, ev.body, now, now + ev.ttl_s))
        results.append(Appended(ev.user, seq, ev.id, now))
    rows.sort(key=_pk)  # primary-key order: fewer B-tree page switches
    return rows, results


def _pk(row: tuple[Any, ...]) -> tuple[str, int]:
    return row[0], row[1]


def _insert_events() -> Insert:
    return insert(events_t)


def _insert_expiries() -> Insert:
    return insert(expiries_t)


def _check_key(name: str, value: str) -> None:
    if not value or len(value) > MAX_KEY_LEN:
        raise ValueError(f"{name} must be 1..{MAX_KEY_LEN} characters, got {len(value)}")


def _new_inbox(user: str, now: float) -> dict[str, Any]:
    return {"user_id": user, "head_seq": 0, "live": 0, "read_bitmap": _EMPTY, "updated_at": now}


def _allocate(
    events: Sequence[NewEvent],
    counters: dict[str, list[int]],
    seen: dict[tuple[str, str], tuple[int, float]],
    now: float,
) -> tuple[list[Appended], list[tuple[Any, ...]], list[str]]:
    """Give each new event the next seq of its user, in input order; duplicates of ``seen``
    (stored) or of an earlier event of the batch get that seq. Updates ``counters``."""
    results: list[Appended] = []
    rows: list[tuple[Any, ...]] = []  # events columns, in table order
    touched: dict[str, None] = {}
    for ev in events:
        if ev.id is not None and (ev.user, ev.id) in seen:
            seq, created_at = seen[(ev.user, ev.id)]
            results.append(Appended(ev.user, seq, ev.id, created_at, duplicate=True))
            continue
        counter = counters.setdefault(ev.user, [0, 0])
        counter[0] += 1
        counter[1] += 1
        seq = counter[0]
        touched[ev.user] = None
        if ev.id is not None:
            seen[(ev.user, ev.id)] = (seq, now)
        rows.append((ev.user, seq, ev.id, ev.body, now, now + ev.ttl_s))
        results.append(Appended(ev.user, seq, ev.id, now))
    return results, rows, list(touched)
