"""The SQL :class:`~pushgate.store.base.EventStore`: SQLAlchemy async Core on SQLite
(aiosqlite, embedded mode) or MySQL/MariaDB (asyncmy, cluster).

Every method runs in one transaction. Writes (``append``, ``mark_read``,
``cleanup_expired``) read-modify-write the user's inbox row under a write lock: on
SQLite one write transaction at a time per store (an asyncio lock) opened with
``BEGIN IMMEDIATE`` (so other processes on the same file wait, up to the busy
timeout); on MySQL ``SELECT .. FOR UPDATE`` row locks. Portable SQL lives here, the
differences in ``_dialect.py``.

Errors: connection loss, timeouts, ``database is locked`` and deadlocks raise
:class:`StoreUnavailable` (retryable, nothing committed); other database errors raise
:class:`StoreError`; invalid arguments raise ``ValueError`` before any I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from pyroaring import BitMap
from sqlalchemy import Insert, bindparam, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from . import bitmap
from ._dialect import chunks, for_url, normalize_url, prepare_path
from .base import (
    Appended,
    Event,
    NewEvent,
    ReadState,
    StoreError,
    StoreUnavailable,
    check_new_event,
)
from .schema import events as events_t
from .schema import inboxes as inboxes_t

_EMPTY = bitmap.serialize(BitMap())

_update_counters = (
    update(inboxes_t)
    .where(inboxes_t.c.user_id == bindparam("b_user"))
    .values(
        live=bindparam("b_live"), read_bitmap=bindparam("b_read"), updated_at=bindparam("b_now")
    )
)


def _describe(exc: sa_exc.SQLAlchemyError) -> str:
    """The driver's message without the (possibly huge) SQL and parameters."""
    orig = getattr(exc, "orig", None)
    return f"{type(orig or exc).__name__}: {orig or exc}"


@contextlib.contextmanager
def _mapped_errors() -> Iterator[None]:
    try:
        yield
    except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as exc:
        raise StoreUnavailable(_describe(exc)) from exc
    except sa_exc.SQLAlchemyError as exc:
        raise StoreError(_describe(exc)) from exc
    except OSError as exc:  # e.g. the SQLite file's directory is not writable
        raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc


async def _check_schema(conn: AsyncConnection) -> None:
    try:
        await conn.execute(select(inboxes_t.c.user_id).limit(0))
        await conn.execute(select(events_t.c.seq).limit(0))
    except sa_exc.DBAPIError as exc:
        raise StoreError(
            f"event store schema missing or outdated ({_describe(exc)}): run migrate() first"
        ) from exc


class SqlEventStore:
    """:class:`~pushgate.store.base.EventStore` on a SQLAlchemy async engine.

    ``url``: ``sqlite+aiosqlite:///path/events.db`` or ``mysql+asyncmy://...`` (a bare
    ``sqlite://`` / ``mysql://`` gets the async driver). ``clock`` gives unix seconds for
    ``created_at``/``expires_at`` and for TTL filtering (injectable for tests).
    ``engine_options`` are passed to ``create_async_engine`` (pool size, echo, ...).
    The schema must exist: run :func:`pushgate.store.migrate` first.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_ms: int = 5000,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = normalize_url(url)
        self._dialect = for_url(self.url, busy_timeout_ms=busy_timeout_ms)
        self._clock = clock
        self._engine_options = dict(engine_options or {})
        self._engine: AsyncEngine | None = None
        self._writer: AsyncEngine | None = None
        self._write_lock = asyncio.Lock()
        self._bulk_sql: dict[str, str] = {}

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Create the engine and check the database: :class:`StoreUnavailable` if it does
        not answer, :class:`StoreError` if the tables are missing (run
        :func:`pushgate.store.migrate` first: ``start`` never creates or migrates the
        schema). Creates a SQLite file's directory."""
        if self._engine is not None:
            return
        with _mapped_errors():
            prepare_path(self.url)
        options = {**self._dialect.engine_options(self.url), **self._engine_options}
        engine = create_async_engine(self.url, **options)
        self._dialect.configure(engine)
        try:
            with _mapped_errors():
                async with engine.connect() as conn:
                    await _check_schema(conn)
        except BaseException:
            await engine.dispose()
            raise
        self._engine, self._writer = engine, self._dialect.write_engine(engine)

    async def close(self) -> None:
        """Dispose of the engine; later calls raise :class:`StoreUnavailable`. Idempotent."""
        engine, self._engine, self._writer = self._engine, None, None
        if engine is not None:
            await engine.dispose()

    @contextlib.asynccontextmanager
    async def _tx(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        """One transaction; commits if the body returns, rolls back if it raises."""
        engine = self._writer if write else self._engine
        if engine is None:
            raise StoreUnavailable("event store is not started or already closed")
        exclusive = write and self._dialect.exclusive_writer
        with _mapped_errors():
            async with self._write_lock if exclusive else contextlib.nullcontext():
                async with engine.begin() as conn:
                    yield conn

    # -- writes --------------------------------------------------------------------

    async def append(self, events: Sequence[NewEvent]) -> list[Appended]:
        """See :meth:`EventStore.append`. ``ValueError`` (nothing stored) if an event is
        invalid. A duplicate ``id`` matches a stored event even when that one has
        expired but was not cleaned up yet (it is still stored)."""
        if not events:
            return []
        for ev in events:
            check_new_event(ev)
        now = self._clock()
        users = sorted({ev.user for ev in events})  # sorted: same lock order everywhere
        pairs = list(dict.fromkeys((ev.user, ev.id) for ev in events if ev.id is not None))
        async with self._tx(write=True) as conn:
            d = self._dialect
            if not d.exclusive_writer:  # rows must exist to be locked
                await d.ensure_inboxes(conn, inboxes_t, [_new_inbox(u, now) for u in users])
            counters = await self._counters(conn, users)
            seen = (
                {(r[0], r[1]): (r[2], r[3]) for r in await d.find_ids(conn, events_t, pairs)}
                if pairs
                else {}
            )
            results, rows, touched = _allocate(events, counters, seen, now)
            if rows:
                upserts = [(u, counters[u][0], counters[u][1], _EMPTY, now) for u in touched]
                await self._bulk(conn, "upsert_inboxes", d.upsert_inboxes(inboxes_t), upserts)
                await self._bulk(conn, "insert_events", insert(events_t), rows)
        return results

    async def mark_read(
        self, user: str, seqs: Sequence[int], ranges: Sequence[tuple[int, int]]
    ) -> ReadState:
        """See :meth:`EventStore.mark_read`. Seqs are clipped to ``[1, head]`` and kept only
        if stored and unexpired. ``ValueError`` on an inverted range or more than
        ``bitmap.DEFAULT_MAX_SIZE`` seqs after clipping; ``KeyError(user)`` if no inbox."""
        now = self._clock()
        async with self._tx(write=True) as conn:
            ib = inboxes_t.c
            stmt = select(ib.head_seq, ib.live, ib.read_bitmap).where(ib.user_id == user)
            row = (await conn.execute(self._dialect.lock(stmt))).first()
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
                    _update_counters,
                    {"b_user": user, "b_live": row.live, "b_read": blob, "b_now": now},
                )
            return ReadState(
                head=row.head_seq, live=row.live, unread=row.live - len(read), read=blob
            )

    async def cleanup_expired(self, now: float, batch: int) -> int:
        """See :meth:`EventStore.cleanup_expired`. Deletes the ``batch`` soonest-expired
        events (by the ``expires_at`` index) and fixes each affected inbox's ``live``
        and read bitmap in the same transaction."""
        if batch <= 0:
            return 0
        async with self._tx(write=True) as conn:
            ev = events_t.c
            stmt = (
                select(ev.user_id, ev.seq)
                .where(ev.expires_at <= now)
                .order_by(ev.expires_at)
                .limit(batch)
            )
            keys = [(r[0], r[1]) for r in await conn.execute(stmt)]
            if not keys:
                return 0
            gone: dict[str, BitMap] = {}
            for user, seq in keys:
                gone.setdefault(user, BitMap()).add(seq)
            inboxes = await self._inboxes(conn, sorted(gone))  # lock inboxes before touching events
            await self._dialect.delete_events(conn, events_t, keys)
            params = []
            for user, live, blob in inboxes:
                read = bitmap.deserialize(blob)
                kept = read - gone[user]
                params.append(
                    {
                        "b_user": user,
                        "b_live": live - len(gone[user]),
                        "b_read": bitmap.serialize(kept) if len(kept) != len(read) else blob,
                        "b_now": now,
                    }
                )
            if params:
                await conn.execute(_update_counters, params)
            return len(keys)

    # -- reads ---------------------------------------------------------------------

    async def fetch(self, user: str, after: int, limit: int) -> list[Event]:
        """See :meth:`EventStore.fetch`; expired events are skipped even before cleanup."""
        if limit <= 0:
            return []
        now = self._clock()
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
        ib = inboxes_t.c
        stmt = select(ib.head_seq, ib.live, ib.read_bitmap).where(ib.user_id == user)
        async with self._tx(write=False) as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            raise KeyError(user)
        read = bitmap.deserialize(row.read_bitmap)
        return ReadState(
            head=row.head_seq, live=row.live, unread=row.live - len(read), read=row.read_bitmap
        )

    # -- helpers -------------------------------------------------------------------

    async def _bulk(
        self, conn: AsyncConnection, key: str, stmt: Insert, rows: list[tuple[Any, ...]]
    ) -> None:
        """executemany of ``rows`` (tuples in table column order) straight to the driver:
        skips SQLAlchemy's per-row parameter processing, the hot spot of a 1000-event append."""
        sql = self._bulk_sql.get(key)
        if sql is None:
            compiled = stmt.compile(dialect=conn.dialect)
            if list(compiled.positiontup or ()) != [c.name for c in stmt.table.c]:
                raise StoreError(f"{key}: needs a positional paramstyle and all columns in order")
            sql = self._bulk_sql[key] = str(compiled)
        await conn.exec_driver_sql(sql, rows)

    async def _counters(self, conn: AsyncConnection, users: list[str]) -> dict[str, list[int]]:
        """``user -> [head_seq, live]`` of existing inboxes, locked."""
        ib = inboxes_t.c
        stmt = select(ib.user_id, ib.head_seq, ib.live).where(
            ib.user_id.in_(bindparam("users", expanding=True))
        )
        stmt = self._dialect.lock(stmt)
        counters: dict[str, list[int]] = {}
        for part in chunks(users, self._dialect.max_params):
            counters.update(
                (r[0], [r[1], r[2]]) for r in await conn.execute(stmt, {"users": list(part)})
            )
        return counters

    async def _inboxes(
        self, conn: AsyncConnection, users: list[str]
    ) -> list[tuple[str, int, bytes]]:
        """``(user, live, read_bitmap)`` of existing inboxes, locked."""
        ib = inboxes_t.c
        stmt = select(ib.user_id, ib.live, ib.read_bitmap).where(
            ib.user_id.in_(bindparam("users", expanding=True))
        )
        stmt = self._dialect.lock(stmt)
        rows: list[tuple[str, int, bytes]] = []
        for part in chunks(users, self._dialect.max_params):
            rows.extend((r[0], r[1], r[2]) for r in await conn.execute(stmt, {"users": list(part)}))
        return rows

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
