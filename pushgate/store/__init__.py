"""Persistent per-user inboxes (see :mod:`pushgate.store.base` for the contract).

``open_store(url)`` picks the backend from the URL; ``migrate(url)`` creates or
upgrades the schema (Alembic ``upgrade head``). Typical start-up::

    await migrate(url)
    store = open_store(url)
    await store.start()
    committer = GroupCommitter(store); await committer.start()
    cleaner = Cleaner(store, lease=store); await cleaner.start()  # one cleaner per cluster
    ...  # shutdown in reverse: cleaner.close(), committer.close(), store.close()
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._dialects import SQLite, for_url, normalize_url, prepare_path, sqlite_file
from .base import (
    Appended,
    ClaimedBatch,
    ClaimedPush,
    Device,
    DeviceStore,
    Event,
    EventStore,
    Leases,
    NewEvent,
    PushJob,
    PushOutbox,
    ReadState,
    Report,
    ReportDelta,
    ReportStore,
    ReportUser,
    StoreError,
    StoreOverloaded,
    StoreUnavailable,
)
from .batcher import GroupCommitter
from .cleanup import Cleaner
from .sql import SqlEventStore

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

__all__ = [
    "MIGRATIONS_DIR",
    "Appended",
    "ClaimedBatch",
    "ClaimedPush",
    "Cleaner",
    "Device",
    "DeviceStore",
    "Event",
    "EventStore",
    "GroupCommitter",
    "Leases",
    "NewEvent",
    "PushJob",
    "PushOutbox",
    "ReadState",
    "Report",
    "ReportDelta",
    "ReportStore",
    "ReportUser",
    "SqlEventStore",
    "StoreError",
    "StoreOverloaded",
    "StoreUnavailable",
    "alembic_config",
    "masked_url",
    "migrate",
    "open_store",
]


def open_store(url: str, **opts: Any) -> EventStore:
    """A not-yet-started store for ``url`` (``sqlite+aiosqlite:///path.db``,
    ``mysql+asyncmy://user:pw@host/db``). ``opts`` go to the backend's constructor
    (:class:`SqlEventStore`: ``clock``, ``busy_timeout_ms``, ``engine_options``,
    ``max_attempts``, MySQL ``connect_timeout_s``/``read_timeout_s``/
    ``lock_wait_timeout_s``/``pool_recycle_s``).
    ``ValueError`` for an unsupported scheme. Call ``await store.start()`` next."""
    for_url(normalize_url(url))  # validates the scheme
    return SqlEventStore(url, **opts)


def masked_url(url: str) -> str:
    """``url`` with its password hidden (``***``), as logs and errors show store URLs."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses (a bad port, no scheme): it may
        # still carry ``user:password@``; hide everything between the last ':' of the
        # userinfo and the '@'
        import re

        return re.sub(r"^([^@/]*//)?([^:@/]*):[^@]*@", r"\1\2:***@", url)


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` built in code (no alembic.ini): our migrations directory,
    and ``url`` for the offline/CLI path of ``env.py``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        cfg.attributes["url"] = url
    return cfg


#: MySQL: the named lock a migration holds (with the database's name: one migration of a
#: database at once)
MIGRATE_LOCK = "pushgate_migrate"
MIGRATE_LOCK_WAIT_S = 600


def _pk_name_note(record: logging.LogRecord) -> bool:
    return "ignored for PRIMARY key" not in record.getMessage()


async def migrate(url: str) -> None:
    """Create or upgrade the schema to the newest revision (``alembic upgrade head``).

    Idempotent, and concurrent callers wait for each other, then find nothing to do: on
    SQLite the whole upgrade is one ``BEGIN IMMEDIATE`` transaction (and the database
    file's directory is created if missing); on MySQL, whose DDL is not transactional,
    the upgrade runs under the named lock :data:`MIGRATE_LOCK` (``GET_LOCK``, waited for
    up to :data:`MIGRATE_LOCK_WAIT_S`). Works from any working directory.
    """
    from alembic import command
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    parsed = normalize_url(url)
    prepare_path(parsed)
    dialect = for_url(parsed)
    if isinstance(dialect, SQLite) and (path := sqlite_file(parsed)) is not None:
        try:
            await asyncio.to_thread(dialect.set_wal, path)
        except sqlite3.Error as e:  # not a database, a directory, read-only
            raise StoreError(f"{type(e).__name__}: {e}") from None
    engine = create_async_engine(parsed, poolclass=NullPool)
    dialect.configure(engine)
    cfg = alembic_config(parsed.render_as_string(hide_password=False))

    def upgrade(connection: Any) -> None:
        cfg.attributes["connection"] = connection
        if dialect.name != "mysql":
            command.upgrade(cfg, "head")
            return
        # two rollouts migrating at once interleaved their revisions' DDL (one failed:
        # "Table 'inboxes' already exists", possibly half way through a revision)
        lock = f"{MIGRATE_LOCK}:{parsed.database}"[:64]  # (the longest name MySQL takes)
        got = connection.execute(text("SELECT GET_LOCK(:lock, :wait)"),
                                 {"lock": lock, "wait": MIGRATE_LOCK_WAIT_S}).scalar()
        if got != 1:
            raise StoreError(f"cannot migrate: another migration held the lock {lock!r} "
                             f"for {MIGRATE_LOCK_WAIT_S} s")
        # MariaDB notes every named primary key (the naming convention's pk_<table>) as
        # "Name 'pk_inboxes' ignored for PRIMARY key.", which asyncmy logs as a warning:
        # ten lines of noise per fresh migrate. Other warnings still show.
        drivers_log = logging.getLogger("asyncmy")
        drivers_log.addFilter(_pk_name_note)
        try:
            command.upgrade(cfg, "head")
        finally:
            drivers_log.removeFilter(_pk_name_note)
            connection.execute(text("SELECT RELEASE_LOCK(:lock)"), {"lock": lock})

    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        async with dialect.write_engine(engine).begin() as conn:
            await conn.run_sync(upgrade)
    except CommandError as e:  # e.g. a revision this version does not know: a newer schema
        raise StoreError(f"cannot migrate: {e} (a schema newer than this version of "
                         f"pushgate? run the version that wrote it)") from None
    except SQLAlchemyError as e:  # not a database, a directory, read-only, refused
        # the worker thread of a failed aiosqlite connection still posts its end to this
        # loop: let it, or a caller that exits now prints "Event loop is closed"
        await asyncio.sleep(0.1)
        cause = getattr(e, "orig", None) or e
        raise StoreError(f"{type(e).__name__}: {cause}") from None
    finally:
        await engine.dispose()
