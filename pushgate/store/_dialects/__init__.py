"""Everything that differs between SQLite and MySQL/MariaDB, one module per database.

The SQL store (``sql.py`` and its parts in ``_sql/``) is written once against
SQLAlchemy Core and asks a :class:`Dialect` for the few statements that cannot be
portable:

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

Keys are compared byte for byte on both (see :mod:`.columns`).

Modules: ``base`` (:class:`Dialect`: the interface and its portable defaults, with the
helpers both use), ``sqlite``, ``mysql``, ``columns`` (the column types whose SQL
differs). This package picks one from a URL (:func:`for_url`).
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy.engine import URL, make_url

from .base import Dialect, chunks, compile_positional, multi_row
from .columns import Blob, Key, KeyType, Reason, Token, binary_collation
from .mysql import MySQL
from .sqlite import SQLite

__all__ = [
    "Blob",
    "Dialect",
    "Key",
    "KeyType",
    "MySQL",
    "Reason",
    "SQLite",
    "Token",
    "binary_collation",
    "chunks",
    "compile_positional",
    "for_url",
    "multi_row",
    "normalize_url",
    "prepare_path",
    "sqlite_file",
]


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
    if not parsed.database:  # (the driver asserted one: "AssertionError: ")
        raise ValueError("the store URL names no database: sqlite+aiosqlite:///<file> or "
                         "mysql+asyncmy://user:pw@host/<database>")
    return parsed


def sqlite_file(url: URL) -> str | None:
    """The file of a SQLite database URL; None for other databases, ``:memory:`` and
    ``file:`` URIs."""
    db = url.database
    if url.get_backend_name() != "sqlite" or not db or db == ":memory:" or db.startswith("file:"):
        return None
    return db


def prepare_path(url: URL) -> None:
    """Create the parent directory of a SQLite database file (no-op for other databases)."""
    db = sqlite_file(url)
    if db is None:
        return
    parent = os.path.dirname(os.path.abspath(db))
    os.makedirs(parent, exist_ok=True)
