"""Everything that differs between SQLite and MySQL/MariaDB, in one module.

``sql.py`` is written once against SQLAlchemy Core and asks a :class:`Dialect` for
the few statements that cannot be portable:

===================  =========================================  ==================================
concern              SQLite (aiosqlite)                         MySQL / MariaDB (asyncmy)
===================  =========================================  ==================================
write concurrency    one writer per process (asyncio lock) and  row locks (``SELECT .. FOR
                     ``BEGIN IMMEDIATE`` against other          UPDATE``) after making sure the
                     processes                                  inbox rows exist
inbox upsert         ``ON CONFLICT (user_id) DO UPDATE``        ``ON DUPLICATE KEY UPDATE``
idempotency lookup   ``VALUES`` CTE cross-joined to the unique  ``(user_id, msg_id) IN (..)``
                     index (a row-value ``IN`` scans the table)
batched delete       executemany by primary key                 ``(user_id, seq) IN (..)`` chunks
key / blob types     ``VARCHAR`` / ``BLOB``                     ``VARCHAR utf8mb4_bin`` (case-
                                                                sensitive) / ``MEDIUMBLOB``
===================  =========================================  ==================================

``RETURNING`` is not used anywhere, so it needs no split. The MySQL column is written
but untested until the MySQL issue; the contract tests run it when
``PUSHGATE_TEST_MYSQL_URL`` is set.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
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
    select,
    tuple_,
)
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

Key = String(255).with_variant(
    mysql.VARCHAR(255, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
)
Blob = LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")

_WRITE = "pushgate_write"  # execution option marking a write transaction


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class Dialect:
    """Portable defaults; subclasses override what their database does differently."""

    name: ClassVar[str]
    exclusive_writer: ClassVar[bool] = False  # writes serialized in-process, rows need no locks
    max_params: ClassVar[int] = 900  # bind parameters per chunked IN / VALUES list

    def engine_options(self, url: URL) -> dict[str, Any]:
        return {}

    def configure(self, engine: AsyncEngine) -> None:
        """Install connect/begin hooks on a freshly created engine."""

    def write_engine(self, engine: AsyncEngine) -> AsyncEngine:
        """The engine to run write transactions on (same pool)."""
        return engine

    def lock(self, stmt: Select[Any]) -> Select[Any]:
        """Lock the selected rows until commit (no-op with an exclusive writer)."""
        return stmt

    async def ensure_inboxes(
        self, conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]
    ) -> None:
        """Create missing inbox rows (leaving existing ones alone) so they can be locked."""

    def upsert_inboxes(self, table: Table) -> Insert:
        """INSERT of full inbox rows that, on an existing user, sets head_seq/live/updated_at."""
        raise NotImplementedError

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
    ) -> None:
        """Delete events by ``(user_id, seq)``."""
        stmt = delete(table).where(
            tuple_(table.c.user_id, table.c.seq).in_(bindparam("keys", expanding=True))
        )
        for part in chunks(keys, self.max_params // 2):
            await conn.execute(stmt, {"keys": list(part)})


class SQLite(Dialect):
    name = "sqlite"
    exclusive_writer = True

    def __init__(self, busy_timeout_ms: int = 5000) -> None:
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
    ) -> None:
        stmt = delete(table).where(
            table.c.user_id == bindparam("b_user"), table.c.seq == bindparam("b_seq")
        )
        if keys:
            await conn.execute(stmt, [{"b_user": u, "b_seq": s} for u, s in keys])


class MySQL(Dialect):
    name = "mysql"

    def engine_options(self, url: URL) -> dict[str, Any]:
        return {"pool_pre_ping": True, "pool_recycle": 3600}

    def lock(self, stmt: Select[Any]) -> Select[Any]:
        return stmt.with_for_update()

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


def for_url(url: str | URL, **opts: Any) -> Dialect:
    """The dialect of a ``sqlite+aiosqlite://`` or ``mysql+asyncmy://`` URL; ``ValueError`` otherwise."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return SQLite(**opts)
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
