"""Everything that differs between SQLite and MySQL/MariaDB, in one module.

``sql.py`` is written once against SQLAlchemy Core and asks a :class:`Dialect` for
the few statements that cannot be portable:

===================  =========================================  ==================================
concern              SQLite (aiosqlite)                         MySQL / MariaDB (asyncmy)
===================  =========================================  ==================================
write concurrency    one writer per process (asyncio lock) and  row locks on the inbox rows,
                     ``BEGIN IMMEDIATE`` against other          ``READ COMMITTED``; deadlocks and
                     processes                                  lock wait timeouts are retried
seq allocation       ``INSERT .. ON CONFLICT DO UPDATE SET      ``INSERT .. ON DUPLICATE KEY UPDATE
                     head_seq = head_seq + n .. RETURNING``     head_seq = head_seq + n``, then
                                                                ``RETURNING`` (MariaDB >= 10.5) or
                                                                a ``SELECT`` (MySQL)
inbox upsert         ``ON CONFLICT (user_id) DO UPDATE``        ``ON DUPLICATE KEY UPDATE``
idempotency lookup   ``VALUES`` CTE cross-joined to the unique  ``(user_id, msg_id) IN (..)``
                     index (a row-value ``IN`` scans the table)
batched delete       executemany by primary key                 ``(user_id, seq) IN (..)`` chunks
batched update       executemany                                one multi-row ``INSERT .. ON
                                                                DUPLICATE KEY UPDATE`` (rows exist)
bulk statements      executemany with bound parameters          multi-row statements written as text
                     (in-process: no round trips)               by :class:`_Literals`, <= 1 MiB each
key / blob types     ``VARCHAR`` / ``BLOB``                     ``VARCHAR`` utf8mb4, binary no-pad
                                                                collation / ``MEDIUMBLOB``
pool                 default                                    pre-ping, recycle, timeouts
push outbox claim    one writer: plain ``SELECT`` then          ``SELECT .. FOR UPDATE SKIP LOCKED``
                     ``UPDATE``                                 (MariaDB >= 10.6, MySQL 8)
ack upsert           ``ON CONFLICT .. max(old, new)``           ``ON DUPLICATE KEY .. GREATEST``
===================  =========================================  ==================================

Keys are compared byte for byte on both: SQLite's default ``BINARY`` collation; on
MySQL/MariaDB a binary collation that does not ignore trailing spaces
(``utf8mb4_nopad_bin`` on MariaDB, ``utf8mb4_0900_bin`` on MySQL 8), so ``"a"`` and
``"a "`` are two users (two idempotency ids) on every backend.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from sqlalchemy import (
    Insert,
    LargeBinary,
    Select,
    String,
    Table,
    bindparam,
    delete,
    event,
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import Dialect as SADialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import TypeDecorator, TypeEngine

_WRITE = "pushgate_write"  # execution option marking a write transaction

# MySQL error codes worth retrying the whole transaction for (it was rolled back).
ER_LOCK_WAIT_TIMEOUT = 1205
ER_LOCK_DEADLOCK = 1213


def binary_collation(dialect: SADialect) -> str:
    """The utf8mb4 collation comparing keys byte for byte, trailing spaces included."""
    if getattr(dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    version = getattr(dialect, "server_version_info", None) or (0,)
    return "utf8mb4_0900_bin" if tuple(version) >= (8, 0, 17) else "utf8mb4_bin"


class KeyType(TypeDecorator[str]):
    """``VARCHAR(255)``: user ids, idempotency ids, apps, lease names (see module doc)."""

    impl = String(255)
    cache_ok = True

    def load_dialect_impl(self, dialect: SADialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(
                mysql.VARCHAR(255, charset="utf8mb4", collation=binary_collation(dialect))
            )
        return dialect.type_descriptor(String(255))


Key = KeyType()
Blob = LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")
# Device tokens are printable ASCII (checked before any I/O): 1 byte per character.
Token = String(512).with_variant(
    mysql.VARCHAR(512, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
)


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


_NEEDS_ESCAPE = re.compile(r"[\x00\n\r\x1a\\'\"]").search


class _Literals:
    """SQL literals of Python values for MySQL statements written as text. Strings that
    need it go through the connection's own escaping (which honours the server's
    NO_BACKSLASH_ESCAPES mode); bytes become hex literals; floats DOUBLE literals."""

    __slots__ = ("_floats", "escape")

    def __init__(self, escape_string: Callable[[str], str]) -> None:
        self.escape = escape_string
        self._floats: dict[float, str] = {}  # a batch shares its created_at / expires_at

    def text(self, value: str) -> str:
        return f"'{self.escape(value)}'" if _NEEDS_ESCAPE(value) else f"'{value}'"

    def number(self, value: float) -> str:
        found = self._floats.get(value)
        if found is None:
            if not math.isfinite(value):
                raise ValueError(f"cannot store {value!r}")
            found = repr(value)
            if "e" not in found:
                found += "e0"  # a DOUBLE literal, not a DECIMAL one
            if len(self._floats) < 256:
                self._floats[value] = found
        return found

    def __call__(self, value: Any) -> str:
        kind = type(value)
        if kind is str:
            return self.text(value)
        if kind is bytes:
            return f"X'{value.hex()}'"
        if kind is int:
            return str(value)
        if kind is float:
            return self.number(value)
        if value is None:
            return "NULL"
        raise TypeError(f"no SQL literal for {kind.__name__}")

    def row(self, row: tuple[Any, ...]) -> str:
        return "(" + ",".join([self(x) for x in row]) + ")"

    def event_row(self, row: tuple[Any, ...]) -> str:
        """An ``events`` row: ``(user, seq, id | None, body, created_at, expires_at)``."""
        user, seq, msg_id, body, created_at, expires_at = row
        msg = "NULL" if msg_id is None else self.text(msg_id)
        return (
            f"({self.text(user)},{int(seq)},{msg},X'{body.hex()}',"
            f"{self.number(created_at)},{self.number(expires_at)})"
        )

    def inbox_row(self, row: tuple[Any, ...]) -> str:
        """An ``inboxes`` row: ``(user, head_seq, live, read_bitmap, updated_at)``."""
        user, head, live, read, updated_at = row
        return (
            f"({self.text(user)},{int(head)},{int(live)},X'{read.hex()}',"
            f"{self.number(updated_at)})"
        )


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
        ``(user_id, msg_id, seq, created_at)`` tuples."""
        c = table.c
        stmt = select(c.user_id, c.msg_id, c.seq, c.created_at).where(
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


class SQLite(Dialect):
    name = "sqlite"
    exclusive_writer = True

    def __init__(self, busy_timeout_ms: int = 5000) -> None:
        super().__init__()
        self.busy_timeout_ms = busy_timeout_ms

    def configure(self, engine: AsyncEngine) -> None:
        pragmas = (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}",
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take BEGIN away from the sqlite3 module (it skips it before SELECT and DDL)
            # and emit it ourselves in _on_begin: real transactions, BEGIN IMMEDIATE writes.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            for pragma in pragmas:
                cursor.execute(pragma)
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
                f"SELECT e.user_id, e.msg_id, e.seq, e.created_at "
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


class MySQL(Dialect):
    """MySQL 8 / MariaDB 10.5+ through asyncmy (>= 0.2.18: older versions let uvloop's
    ``RuntimeError`` on a closed transport escape the pool's pre-ping, see
    ``docs/storage.md``)."""

    name = "mysql"
    # The driver interpolates parameters client-side: the only limit is the packet size
    # (max_allowed_packet, 16 MiB by default); 10,000 keys stay far below it.
    max_params = 10_000
    # Multi-row statements are cut at this size (well below the default max_allowed_packet
    # of 16 MiB; asyncmy's own executemany cuts at 1,000,000 bytes).
    max_statement_bytes = 1 << 20

    def __init__(
        self,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        lock_wait_timeout_s: int = 10,
        pool_recycle_s: int = 1800,
        **_ignored: Any,  # options of other dialects (busy_timeout_ms)
    ) -> None:
        super().__init__()
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.lock_wait_timeout_s = lock_wait_timeout_s
        self.pool_recycle_s = pool_recycle_s

    def engine_options(self, url: URL) -> dict[str, Any]:
        return {
            # A pooled connection is pinged before use: a server restart costs each
            # idle connection one failed ping and a reconnect, never a failed call.
            "pool_pre_ping": True,
            # Below the server's wait_timeout (8 h) and most proxies' idle timeouts.
            "pool_recycle": self.pool_recycle_s,
            # Correctness rests on the inbox row locks alone; READ COMMITTED takes no gap
            # locks (fewer deadlocks between concurrent appends) and every statement sees
            # the latest committed rows.
            "isolation_level": "READ COMMITTED",
            "connect_args": {
                "charset": "utf8mb4",
                "connect_timeout": self.connect_timeout_s,
                # A half-open connection (host died, no RST) fails after this instead of
                # hanging until TCP keepalive gives up.
                "read_timeout": self.read_timeout_s,
                "init_command": (
                    f"SET SESSION innodb_lock_wait_timeout = {int(self.lock_wait_timeout_s)}"
                ),
            },
        }

    def lock(self, stmt: Select[Any], table: Table) -> Select[Any]:
        # Forced to the primary key: a table scan (the optimizer's choice for small tables)
        # would lock rows outside the IN list, in scan order, on the way: deadlocks.
        return stmt.with_for_update().with_hint(table, "FORCE INDEX (PRIMARY)", "mysql")

    def is_conflict(self, exc: sa_exc.DBAPIError) -> bool:
        args = getattr(exc.orig, "args", None) or (None,)
        return args[0] in (ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT)

    def _allocate_stmt(self, table: Table) -> Insert:
        stmt = mysql.insert(table)
        new = stmt.inserted
        # Assignments run left to right; each reads only its own column's old value.
        return stmt.on_duplicate_key_update(
            head_seq=table.c.head_seq + new.head_seq,
            live=table.c.live + new.live,
            updated_at=new.updated_at,
        )

    async def insert_rows(
        self,
        conn: AsyncConnection,
        key: str,
        build: Callable[[], Insert],
        rows: Sequence[tuple[Any, ...]],
        returning: str = "",
    ) -> list[tuple[Any, ...]]:
        # Multi-row statements written as text, values rendered here: an order of
        # magnitude cheaper than the driver's escaping for blobs (hex literals) and
        # floats, the bulk of a client's CPU per appended event.
        sql, row, table = self._compiled(conn, key, build)
        at = sql.index(row)
        prefix, suffix = sql[:at], sql[at + len(row) :] + returning
        raw = await conn.get_raw_connection()
        literal = _Literals(raw.driver_connection.escape_string)  # type: ignore[union-attr]
        render = {"events": literal.event_row, "inboxes": literal.inbox_row}.get(
            table, literal.row
        )
        found: list[tuple[Any, ...]] = []
        values: list[str] = []
        size = 0
        for r in rows:
            value = render(r)
            if values and size + len(value) > self.max_statement_bytes:
                found += await self._execute_text(conn, prefix + ",".join(values) + suffix)
                values, size = [], 0
            values.append(value)
            size += len(value) + 1
        if values:
            found += await self._execute_text(conn, prefix + ",".join(values) + suffix)
        return found

    @staticmethod
    async def _execute_text(conn: AsyncConnection, sql: str) -> list[tuple[Any, ...]]:
        # no_parameters: the driver must not %-format the text (values may contain "%").
        result = await conn.exec_driver_sql(sql, execution_options={"no_parameters": True})
        return [tuple(r) for r in result.all()] if result.returns_rows else []

    async def allocate(
        self, conn: AsyncConnection, table: Table, rows: list[tuple[Any, ...]]
    ) -> dict[str, int]:
        if conn.dialect.insert_returning:  # MariaDB >= 10.5: the rows as updated
            return await super().allocate(conn, table, rows)
        await self.insert_rows(conn, "allocate", lambda: self._allocate_stmt(table), rows)
        c = table.c  # MySQL has no RETURNING: read back (locked by us, so unchanged)
        stmt = select(c.user_id, c.head_seq).where(c.user_id.in_(bindparam("users", expanding=True)))
        heads: dict[str, int] = {}
        for part in chunks([r[0] for r in rows], self.max_params):
            heads.update((r[0], r[1]) for r in await conn.execute(stmt, {"users": part}))
        return heads

    async def ensure_inboxes(
        self, conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]
    ) -> None:
        stmt = mysql.insert(table)
        await conn.execute(stmt.on_duplicate_key_update(user_id=table.c.user_id), rows)

    def upsert_inboxes(self, table: Table) -> Insert:
        stmt = mysql.insert(table)
        new = stmt.inserted
        return stmt.on_duplicate_key_update(
            head_seq=new.head_seq, live=new.live, updated_at=new.updated_at
        )

    # The inbox rows of the cleanup exist and are locked: an upsert is a multi-row UPDATE
    # in one round trip (executemany of an UPDATE would be one round trip per row).

    async def release_expired(
        self, conn: AsyncConnection, table: Table, gone: list[tuple[str, int]], now: float
    ) -> dict[str, bytes]:
        if not conn.dialect.insert_returning:
            return await super().release_expired(conn, table, gone, now)
        # MariaDB: lock, decrement and read the bitmaps in one statement.
        rows = [(u, 0, n, b"", now) for u, n in gone]
        returning = f" RETURNING {table.c.user_id.name}, {table.c.read_bitmap.name}"
        found = await self.insert_rows(
            conn, "decrement", lambda: self._decrement_stmt(table), rows, returning
        )
        return {r[0]: r[1] for r in found}

    async def _decrement(
        self, conn: AsyncConnection, table: Table, gone: list[tuple[str, int]], now: float
    ) -> None:
        rows = [(u, 0, n, b"", now) for u, n in gone]
        await self.insert_rows(conn, "decrement", lambda: self._decrement_stmt(table), rows)

    @staticmethod
    def _decrement_stmt(table: Table) -> Insert:
        stmt = mysql.insert(table)
        new = stmt.inserted
        return stmt.on_duplicate_key_update(
            live=table.c.live - new.live, updated_at=new.updated_at
        )

    async def set_read_bitmaps(
        self, conn: AsyncConnection, table: Table, rows: list[tuple[str, bytes]], now: float
    ) -> None:
        def build() -> Insert:
            stmt = mysql.insert(table)
            new = stmt.inserted
            return stmt.on_duplicate_key_update(
                read_bitmap=new.read_bitmap, updated_at=new.updated_at
            )

        values = [(u, 0, 0, blob, now) for u, blob in rows]
        await self.insert_rows(conn, "set_read_bitmaps", build, values)

    async def delete_events(
        self, conn: AsyncConnection, table: Table, keys: Sequence[tuple[str, int]]
    ) -> int:
        # Written as text like insert_rows: SQLAlchemy's expanding IN of 1,000 pairs costs
        # more client CPU than the DELETE costs the server.
        raw = await conn.get_raw_connection()
        literal = _Literals(raw.driver_connection.escape_string)  # type: ignore[union-attr]
        c = table.c
        prefix = f"DELETE FROM {table.name} WHERE ({c.user_id.name}, {c.seq.name}) IN ("
        deleted, size = 0, 0
        values: list[str] = []
        for user, seq in keys:
            value = f"({literal.text(user)},{int(seq)})"
            if values and size + len(value) > self.max_statement_bytes:
                deleted += await self._rowcount_text(conn, prefix + ",".join(values) + ")")
                values, size = [], 0
            values.append(value)
            size += len(value) + 1
        if values:
            deleted += await self._rowcount_text(conn, prefix + ",".join(values) + ")")
        return deleted

    @staticmethod
    async def _rowcount_text(conn: AsyncConnection, sql: str) -> int:
        result = await conn.exec_driver_sql(sql, execution_options={"no_parameters": True})
        return result.rowcount

    async def find_ids(
        self, conn: AsyncConnection, table: Table, pairs: Sequence[tuple[str, str]]
    ) -> list[tuple[Any, ...]]:
        c = table.c
        # Forced: the optimizer tends to take the primary key's user_id prefix instead,
        # which reads every stored event of the user.
        stmt = (
            select(c.user_id, c.msg_id, c.seq, c.created_at)
            .where(tuple_(c.user_id, c.msg_id).in_(bindparam("pairs", expanding=True)))
            .with_hint(table, "FORCE INDEX (uq_events_user_id_msg_id)", "mysql")
        )
        found: list[tuple[Any, ...]] = []
        for part in chunks(pairs, self.max_params // 2):
            found.extend(tuple(r) for r in await conn.execute(stmt, {"pairs": list(part)}))
        return found

    def upsert_device(self, table: Table) -> Insert:
        stmt = mysql.insert(table)
        new = stmt.inserted
        return stmt.on_duplicate_key_update(
            user_id=new.user_id, app=new.app, updated_at=new.updated_at
        )

    def lock_skip(self, stmt: Select[Any]) -> Select[Any]:
        return stmt.with_for_update(skip_locked=True)

    def by_index(self, stmt: Select[Any], table: Table, index: str) -> Select[Any]:
        # An IN list longer than eq_range_index_dive_limit (200) is costed from the
        # index statistics; right after a bulk load (a campaign's devices) those can be
        # stale and the optimizer scans the whole table for each batch (seen: 228k rows
        # per 500-user lookup, most of MariaDB's CPU in S7).
        return stmt.with_hint(table, f"FORCE INDEX ({index})")

    def upsert_acks(self, table: Table) -> Insert:
        stmt = mysql.insert(table)
        new = stmt.inserted
        return stmt.on_duplicate_key_update(
            acked_seq=func.greatest(table.c.acked_seq, new.acked_seq), updated_at=new.updated_at
        )


def for_url(url: str | URL, **opts: Any) -> Dialect:
    """The dialect of a ``sqlite+aiosqlite://`` or ``mysql+asyncmy://`` URL; ``ValueError`` otherwise."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return SQLite(busy_timeout_ms=opts.get("busy_timeout_ms", 5000))
    if backend in ("mysql", "mariadb"):
        return MySQL(**opts)
    raise ValueError(
        f"unsupported store URL scheme {backend!r}: use sqlite+aiosqlite:// or mysql+asyncmy://"
    )


def normalize_url(url: str | URL) -> URL:
    """Pick the async driver when the URL names none (``sqlite://`` -> ``sqlite+aiosqlite://``)."""
    parsed = make_url(url)
    driver = {"sqlite": "sqlite+aiosqlite", "mysql": "mysql+asyncmy", "mariadb": "mariadb+asyncmy"}
    if parsed.drivername in driver:
        parsed = parsed.set(drivername=driver[parsed.drivername])
    if parsed.drivername not in ("sqlite+aiosqlite", "mysql+asyncmy", "mariadb+asyncmy"):
        raise ValueError(
            f"unsupported store URL driver {parsed.drivername!r}: "
            "use sqlite+aiosqlite:// or mysql+asyncmy://"
        )
    return parsed


def prepare_path(url: URL) -> None:
    """Create the parent directory of a SQLite database file (no-op for other databases)."""
    db = url.database
    if url.get_backend_name() != "sqlite" or not db or db == ":memory:" or db.startswith("file:"):
        return
    parent = os.path.dirname(os.path.abspath(db))
    os.makedirs(parent, exist_ok=True)
