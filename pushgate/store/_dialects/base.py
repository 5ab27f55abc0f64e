"""The :class:`Dialect` interface: the statements the SQL store cannot write portably,
with portable defaults (``sqlite.py`` and ``mysql.py`` override what their database does
differently), and the helpers both use to run multi-row statements.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from sqlalchemy import Insert, Select, Table, bindparam, delete, select, tuple_, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def compile_positional(stmt: Insert, conn: AsyncConnection, key: str) -> tuple[str, str, str]:
    """SQL of a single-row INSERT taking every column of its table in order as a
    positional parameter, the text of its ``VALUES`` row (e.g. ``(%s, %s)``) and the
    table's name."""
    compiled = stmt.compile(dialect=conn.dialect)
    columns = [c.name for c in stmt.table.c]
    if list(compiled.positiontup or ()) != columns:
        raise RuntimeError(f"{key}: needs a positional paramstyle and all columns in order")
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    row = "(" + ", ".join([mark] * len(columns)) + ")"
    sql = str(compiled)
    if row not in sql:
        raise RuntimeError(f"{key}: VALUES row {row} not found in {sql!r}")
    return sql, row, stmt.table.name


def multi_row(sql: str, row: str, n: int) -> str:
    """``sql`` with its single ``VALUES`` row repeated ``n`` times."""
    return sql.replace(row, ", ".join([row] * n), 1)


class Dialect:
    """Portable defaults; subclasses override what their database does differently."""

    name: ClassVar[str]
    exclusive_writer: ClassVar[bool] = False  # writes serialized in-process, rows need no locks
    max_params: ClassVar[int] = 900  # bind parameters per chunked IN / VALUES list

    def __init__(self) -> None:
        self._sql: dict[str, tuple[str, str, str]] = {}

    def engine_options(self, url: URL) -> dict[str, Any]:
        return {}

    def configure(self, engine: AsyncEngine) -> None:
        """Install connect/begin hooks on a freshly created engine."""

    def write_engine(self, engine: AsyncEngine) -> AsyncEngine:
        """The engine to run write transactions on (same pool)."""
        return engine

    def lock(self, stmt: Select[Any], table: Table) -> Select[Any]:
        """Lock the rows of ``table`` that ``stmt`` selects by primary key, until commit
        (no-op with an exclusive writer)."""
        return stmt

    def is_conflict(self, exc: sa_exc.DBAPIError) -> bool:
        """Whether ``exc`` rolled the transaction back for a lock conflict (deadlock,
        lock wait timeout): the same transaction may succeed when run again."""
        return False

    def _compiled(
        self, conn: AsyncConnection, key: str, build: Callable[[], Insert]
    ) -> tuple[str, str, str]:
        found = self._sql.get(key)
        if found is None:
            found = self._sql[key] = compile_positional(build(), conn, key)
        return found

    async def insert_rows(
        self,
        conn: AsyncConnection,
        key: str,
        build: Callable[[], Insert],
        rows: Sequence[tuple[Any, ...]],
        returning: str = "",
    ) -> list[tuple[Any, ...]]:
        """Run the single-row INSERT made by ``build`` (every column, in table order;
        compiled once per ``key``) for all ``rows`` in as few round trips as possible,
        straight to the driver (SQLAlchemy's per-row parameter processing is the hot
        spot of a 1000-event append). With ``returning`` (a ``RETURNING ..`` clause)
        returns the rows it yields."""
        sql, row, _table = self._compiled(conn, key, build)
        if not rows:
            return []
        if not returning:
            await conn.exec_driver_sql(sql, list(rows))  # executemany
            return []
        found: list[tuple[Any, ...]] = []
        per = max(1, self.max_params // len(rows[0]))
        for part in chunks(rows, per):
            params = tuple(x for r in part for x in r)
            result = await conn.exec_driver_sql(multi_row(sql, row, len(part)) + returning, params)
            found.extend(tuple(r) for r in result)
        return found

    # -- inboxes -----------------------------------------------------------------

    def _allocate_stmt(self, table: Table) -> Insert:
        raise NotImplementedError

    async def allocate(
        self, conn: AsyncConnection, table: Table, rows: list[tuple[Any, ...]]
    ) -> dict[str, int]:
        """Add ``n`` to ``head_seq`` and ``live`` of each ``(user, n, n, empty_bitmap,
        now)`` row (creating missing inboxes), locking the rows until commit. ``rows``
        sorted by user (the lock order). Returns each user's new ``head_seq``: the
        user's new seqs are ``head - n + 1 .. head``."""
        returning = f" RETURNING {table.c.user_id.name}, {table.c.head_seq.name}"
        found = await self.insert_rows(
            conn, "allocate", lambda: self._allocate_stmt(table), rows, returning
        )
        return {r[0]: r[1] for r in found}

    async def ensure_inboxes(
        self, conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]
    ) -> None:
        """Create missing inbox rows (leaving existing ones alone) so they can be locked."""

    def upsert_inboxes(self, table: Table) -> Insert:
        """INSERT of full inbox rows that, on an existing user, sets head_seq/live/updated_at."""
        raise NotImplementedError

    async def release_expired(
        self, conn: AsyncConnection, table: Table, gone: list[tuple[str, int]], now: float
    ) -> dict[str, bytes]:
        """Lock the inboxes of ``gone`` (``(user, n)`` sorted by user: the lock order),
        subtract ``n`` from their ``live`` and return their read bitmaps."""
        c = table.c
        stmt = select(c.user_id, c.read_bitmap).where(
            c.user_id.in_(bindparam("users", expanding=True))
        )
        stmt = self.lock(stmt, table)
        bitmaps: dict[str, bytes] = {}
        for part in chunks([u for u, _ in gone], self.max_params):
            bitmaps.update((r[0], r[1]) for r in await conn.execute(stmt, {"users": part}))
        await self._decrement(conn, table, gone, now)
        return bitmaps

    async def _decrement(
        self, conn: AsyncConnection, table: Table, gone: list[tuple[str, int]], now: float
    ) -> None:
        c = table.c
        stmt = (
            update(table)
            .where(c.user_id == bindparam("b_user"))
            .values(live=c.live - bindparam("b_n"), updated_at=bindparam("b_now"))
        )
        await conn.execute(stmt, [{"b_user": u, "b_n": n, "b_now": now} for u, n in gone])

    async def set_read_bitmaps(
        self, conn: AsyncConnection, table: Table, rows: list[tuple[str, bytes]], now: float
    ) -> None:
        """Replace the read bitmaps of existing (locked) inboxes."""
        c = table.c
        stmt = (
            update(table)
            .where(c.user_id == bindparam("b_user"))
            .values(read_bitmap=bindparam("b_read"), updated_at=bindparam("b_now"))
        )
        await conn.execute(stmt, [{"b_user": u, "b_read": b, "b_now": now} for u, b in rows])

    # -- events ------------------------------------------------------------------

    async def find_ids(
        self, conn: AsyncConnection, table: Table, pairs: Sequence[tuple[str, str]]
    ) -> list[tuple[Any, ...]]:
        """Stored events matching ``(user_id, msg_id)`` pairs, as
        ``(user_id, msg_id, seq, created_at, expires_at)`` tuples."""
        c = table.c
        stmt = select(c.user_id, c.msg_id, c.seq, c.created_at, c.expires_at).where(
            tuple_(c.user_id, c.msg_id).in_(bindparam("pairs", expanding=True))
        )
        found: list[tuple[Any, ...]] = []
        for part in chunks(pairs, self.max_params // 2):
            found.extend(tuple(r) for r in await conn.execute(stmt, {"pairs": list(part)}))
        return found

    async def delete_events(
        self, conn: AsyncConnection, table: Table, keys: Sequence[tuple[str, int]]
    ) -> int:
        """Delete events by ``(user_id, seq)``; returns the number of rows deleted."""
        stmt = delete(table).where(
            tuple_(table.c.user_id, table.c.seq).in_(bindparam("keys", expanding=True))
        )
        deleted = 0
        for part in chunks(keys, self.max_params // 2):
            deleted += (await conn.execute(stmt, {"keys": list(part)})).rowcount
        return deleted

    # -- devices -----------------------------------------------------------------

    def upsert_device(self, table: Table) -> Insert:
        """INSERT of a device row that, on an existing ``(platform, token)``, moves it to
        the new user/app and refreshes ``updated_at``."""
        raise NotImplementedError

    # -- push outbox ---------------------------------------------------------------

    def lock_skip(self, stmt: Select[Any]) -> Select[Any]:
        """Lock the selected rows until commit, skipping rows other transactions hold
        (no-op with an exclusive writer)."""
        return stmt

    def by_index(self, stmt: Select[Any], table: Table, index: str) -> Select[Any]:
        """Look rows up through ``index`` whatever the optimizer's statistics say."""
        return stmt

    def upsert_acks(self, table: Table) -> Insert:
        """INSERT of ``push_acks`` rows that keeps the larger ``acked_seq``."""
        raise NotImplementedError
