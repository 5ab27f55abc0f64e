"""MySQL 8 / MariaDB 10.5+ through asyncmy: row locks taken in user order, lock
conflicts retried, ``ON DUPLICATE KEY UPDATE`` upserts, multi-row statements written as
text by :class:`_Literals`."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Insert, Select, Table, bindparam, event, func, select, tuple_
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .base import Dialect, chunks

# MySQL error codes worth retrying the whole transaction for (it was rolled back).
ER_LOCK_WAIT_TIMEOUT = 1205
ER_LOCK_DEADLOCK = 1213
#: seconds a MariaDB transaction that wrote may send nothing before the server ends it:
#: below the lock wait (10 s) and a router's store deadline (8 s), so that sends waiting
#: on the locks of a stopped router get them in time
IDLE_WRITE_TX_S = 5

_NEEDS_ESCAPE = re.compile(r"[\x00\n\r\x1a\\'\"]").search


def _connect(dialect: Any, conn_rec: Any, cargs: Any, cparams: Any) -> Any:
    """The driver's connect, with a connection the server (or a proxy or load balancer in
    front of a dead one) resets while asyncmy sets it up: asyncmy then raises a bare
    ``RuntimeError`` ("Transport does not expose socket instance"), which SQLAlchemy
    passes through, and a send got 500 ``internal`` instead of 503 ``store_unavailable``.
    It is the driver's "lost connection" (2013) here."""
    dbapi = dialect.loaded_dbapi
    try:
        return dbapi.connect(*cargs, **cparams)
    except RuntimeError as exc:
        raise dbapi.OperationalError(
            2013, f"Lost connection to MySQL server while connecting ({exc})") from exc


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
        """An ``events`` row: ``(user, seq, id | None, body, created_at, expires_at,
        report | None, marks)``."""
        user, seq, msg_id, body, created_at, expires_at, report, marks = row
        msg = "NULL" if msg_id is None else self.text(msg_id)
        rep = "NULL" if report is None else self.text(report)
        return (
            f"({self.text(user)},{int(seq)},{msg},X'{body.hex()}',"
            f"{self.number(created_at)},{self.number(expires_at)},{rep},{int(marks)})"
        )

    def inbox_row(self, row: tuple[Any, ...]) -> str:
        """An ``inboxes`` row: ``(user, head_seq, live, read_bitmap, updated_at)``."""
        user, head, live, read, updated_at = row
        return (
            f"({self.text(user)},{int(head)},{int(live)},X'{read.hex()}',"
            f"{self.number(updated_at)})"
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
        session_idle_timeout_s: float = 60.0,
        **_ignored: Any,  # options of other dialects (busy_timeout_ms)
    ) -> None:
        super().__init__()
        if session_idle_timeout_s < 0:
            raise ValueError("session_idle_timeout_s must be >= 0")
        self.session_idle_timeout_s = session_idle_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.lock_wait_timeout_s = lock_wait_timeout_s
        self.pool_recycle_s = pool_recycle_s

    def engine_options(self, url: URL) -> dict[str, Any]:
        return {
            # A pooled connection is pinged before use: a server restart costs each
            # idle connection one failed ping and a reconnect, never a failed call.
            "pool_pre_ping": True,
            # Every transaction ends in its own COMMIT or ROLLBACK (engine.begin); the
            # pool's extra ROLLBACK at check-in was one more round trip for nothing.
            "pool_reset_on_return": None,
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
                # MariaDB (10.3+, an executable comment MySQL skips): a transaction that
                # holds writes and sends nothing for IDLE_WRITE_TX_S is ended by the
                # server, so a stopped (SIGSTOP) or partitioned router does not keep its
                # users' inbox row locks, and the other routers' sends to them, waiting
                "init_command": (
                    f"SET SESSION innodb_lock_wait_timeout = {int(self.lock_wait_timeout_s)}"
                    f" /*M!100300 , idle_write_transaction_timeout = {IDLE_WRITE_TX_S} */"
                ),
            },
        }

    def configure(self, engine: AsyncEngine) -> None:
        """A pooled connection idle for more than ``session_idle_timeout_s`` is closed at
        checkout and a new one is made (SQLAlchemy's ``DisconnectionError`` in a checkout
        hook): what a stopped, restarted or partitioned server left behind is not
        handed out again after a quiet spell, and its pre-ping cannot hang a call for
        ``read_timeout``. 0: no limit."""
        event.listen(engine.sync_engine, "do_connect", _connect)
        limit = self.session_idle_timeout_s
        if not limit:
            return
        pool = engine.sync_engine.pool

        def checkin(dbapi_conn: Any, record: Any) -> None:
            record.info["idle_since"] = time.monotonic()

        def checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
            since = record.info.pop("idle_since", None)
            if since is not None and time.monotonic() - since > limit:
                raise sa_exc.DisconnectionError(f"pooled connection idle over {limit:g} s")

        event.listen(pool, "checkin", checkin)
        event.listen(pool, "checkout", checkout)

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
        driver = raw.driver_connection
        literal = _Literals(driver.escape_string)  # type: ignore[union-attr]
        render = {"events": literal.event_row, "inboxes": literal.inbox_row}.get(
            table, literal.row
        )
        found: list[tuple[Any, ...]] = []
        values: list[str] = []
        size = 0
        for r in rows:
            value = render(r)
            if values and size + len(value) > self.max_statement_bytes:
                found += await self._driver_text(conn, driver, prefix + ",".join(values)
                                                 + suffix)
                values, size = [], 0
            values.append(value)
            size += len(value) + 1
        if values:
            found += await self._driver_text(conn, driver, prefix + ",".join(values) + suffix)
        return found

    async def _driver_text(self, conn: AsyncConnection, driver: Any,
                           sql: str) -> list[tuple[Any, ...]]:
        """``sql`` run on the driver's connection itself, inside ``conn``'s transaction:
        SQLAlchemy's execution adds a greenlet switch and a result object per statement
        (~17 % of an append's CPU) and nothing these statements use. Errors come out as
        SQLAlchemy would raise them (``DBAPIError`` subclasses, a broken connection
        invalidated), so the store maps them the same way."""
        dbapi_error = conn.dialect.loaded_dbapi.Error
        try:
            async with driver.cursor() as cur:
                await cur.execute(sql)  # no arguments: the text is not %-formatted
                return [tuple(r) for r in await cur.fetchall()] if cur.description else []
        except dbapi_error as exc:
            broken = conn.dialect.is_disconnect(exc, None, None)
            if broken:
                await conn.invalidate()
            raise sa_exc.DBAPIError.instance(
                sql[:200], None, exc, dbapi_error, connection_invalidated=broken
            ) from exc
        except BaseException:  # cancelled mid-statement: the reply may be half read
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.invalidate())
            raise

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
            select(c.user_id, c.msg_id, c.seq, c.created_at, c.expires_at)
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
