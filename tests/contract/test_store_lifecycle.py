"""The store's lifecycle and migrations (start, close, migrate, the schema module), on
every backend of conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pyroaring import BitMap
from sqlalchemy.ext.asyncio import create_async_engine

from pushgate.store import (
    NewEvent,
    SqlEventStore,
    StoreError,
    StoreUnavailable,
    alembic_config,
    bitmap,
    migrate,
    open_store,
)
from pushgate.store.schema import REVISION, metadata
from tests import services
from tests.support.sql import run_sql

from .conftest import BACKENDS, TTL, FakeClock, ev


async def test_closed_store_is_unavailable(store: SqlEventStore) -> None:
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.head("a")
    with pytest.raises(StoreUnavailable):
        await store.append([ev("a")])


async def test_migrate_from_any_cwd_creates_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    monkeypatch.chdir(tmp_path)
    url = "sqlite+aiosqlite:///nested/dir/events.db"  # relative to the cwd
    await migrate(url)
    await migrate(url)  # idempotent
    assert (tmp_path / "nested" / "dir" / "events.db").is_file()

    store = open_store(url, clock=clock)
    await store.start()
    try:
        assert [r.seq for r in await store.append([ev("a")])] == [1]
    finally:
        await store.close()


async def test_migrations_match_schema_module(store_url: str) -> None:
    engine = create_async_engine(store_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), metadata)
            )
    finally:
        await engine.dispose()
    assert diff == []


@pytest.mark.parametrize("backend", BACKENDS)
async def test_migrations_run_at_once_wait_for_each_other(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Two rollouts that migrate one database at once: both succeed, the schema is
    whole. On MySQL (DDL is not transactional) they interleaved their revisions and one
    failed ("Table 'inboxes' already exists"), before the migration took a named lock.
    On SQLite, setting WAL on connect failed "database is locked" while another process
    held a lock on the fresh file (about 1 round in 20; hence 20 fresh files)."""
    if backend == "sqlite":
        for i in range(20):
            url = f"sqlite+aiosqlite:///{tmp_path}/fresh{i}.db"
            await asyncio.gather(*(asyncio.to_thread(asyncio.run, migrate(url))
                                   for _ in range(3)))
    database = contextlib.nullcontext(f"sqlite+aiosqlite:///{tmp_path}/fresh0.db")
    if backend == "mysql":
        server = request.getfixturevalue("mysql_server")
        database = services.mysql_database(server, services.new_database_name("_two"))
    with database as url:
        if backend == "mysql":
            await asyncio.gather(*(asyncio.to_thread(asyncio.run, migrate(url))
                                   for _ in range(3)))
        store = open_store(url)
        await store.start()  # (checks every table and column)
        try:
            assert [r.seq for r in await store.append([ev("a"), ev("a")])] == [1, 2]
        finally:
            await store.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_migrations_upgrade_keeps_data_and_downgrade_reverts(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, clock: FakeClock
) -> None:
    database = contextlib.nullcontext(f"sqlite+aiosqlite:///{tmp_path}/mig.db")
    if backend == "mysql":
        server = request.getfixturevalue("mysql_server")
        database = services.mysql_database(server, services.new_database_name("_mig"))
    with database as url:
        cfg = alembic_config(url)
        await asyncio.to_thread(command.upgrade, cfg, "0001")
        await run_sql(url, "INSERT INTO inboxes VALUES ('a', 1, 1, '', 0)",
                      "INSERT INTO events VALUES ('a', 1, 'm', 'x', 0, 9999999999)")

        await migrate(url)  # 0001 -> head
        store = open_store(url, clock=clock)
        await store.start()
        try:
            assert [(e.seq, e.id) for e in await store.fetch("a", 0, 10)] == [(1, "m")]
            assert [(r.seq, r.duplicate) for r in await store.append([ev("a", "m ")])] == [
                (2, False)
            ]
        finally:
            await store.close()

        # Downgrading to 0001 on MySQL makes "m" and "m " equal again: refused before 0002
        # changes anything (it dropped leases and devices, then failed, at 0002, and
        # 'pushgate migrate' could not repair that); remove one first.
        if backend == "mysql":
            # likewise 0008 with two spellings of a reason in one report
            engine = create_async_engine(url)
            try:
                async with engine.begin() as conn:
                    await conn.exec_driver_sql(
                        "INSERT INTO report_reasons (report, reason, n) VALUES "
                        "('r', 'Unregistered', 1), ('r', 'UNREGISTERED', 2)")
                with pytest.raises(RuntimeError, match=r"cannot downgrade 0008: report 'r' has "
                                                       r"the reasons 'UNREGISTERED' and "
                                                       r"'Unregistered'"):
                    await asyncio.to_thread(command.downgrade, cfg, "base")
                async with engine.begin() as conn:
                    assert (await conn.exec_driver_sql(
                        "SELECT version_num FROM alembic_version")).scalar() == REVISION
                    await conn.exec_driver_sql("DELETE FROM report_reasons")
            finally:
                await engine.dispose()
            with pytest.raises(RuntimeError, match=r"cannot downgrade 0002: events has keys "
                                                   r"\(user_id, msg_id\) .*'a\|m' and 'a\|m '"):
                await asyncio.to_thread(command.downgrade, cfg, "base")
            await migrate(url)  # back to head from 0002: the store starts
            store = open_store(url, clock=clock)
            await store.start()
            await store.close()
        await run_sql(url, "DELETE FROM events WHERE msg_id = 'm '")
        await asyncio.to_thread(command.downgrade, cfg, "base")
        await asyncio.to_thread(command.upgrade, cfg, "head")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_upgrade_to_expiries_backfills_and_cleanup_finds_old_events(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, clock: FakeClock
) -> None:
    database = contextlib.nullcontext(f"sqlite+aiosqlite:///{tmp_path}/exp.db")
    if backend == "mysql":
        server = request.getfixturevalue("mysql_server")
        database = services.mysql_database(server, services.new_database_name("_exp"))
    with database as url:
        cfg = alembic_config(url)
        await asyncio.to_thread(command.upgrade, cfg, "0004")
        now = clock()
        rows = ", ".join(f"('u{i % 7}', {i // 7 + 1}, NULL, 'x', {now}, {now + (5 if i % 3 else 50)})"
                         for i in range(700))
        await run_sql(url, "INSERT INTO inboxes VALUES " + ", ".join(
            f"('u{u}', 100, 100, '', 0)" for u in range(7)), "INSERT INTO events VALUES " + rows)
        await migrate(url)  # 0004 -> head: expiries rows for the 700 stored events
        store = open_store(url, clock=clock)
        await store.start()
        try:
            clock.advance(10)
            deleted = 0
            while n := await store.cleanup_expired(clock(), 64):
                deleted += n
            assert deleted == sum(1 for i in range(700) if i % 3)
            assert sum([(await store.read_state(f"u{u}")).live for u in range(7)]) == 700 - deleted
            clock.advance(100)
            while await store.cleanup_expired(clock(), 64):
                pass
            assert [(await store.read_state(f"u{u}")).live for u in range(7)] == [0] * 7
        finally:
            await store.close()


async def test_sqlite_upgrade_to_0006_keeps_ids_unique_and_indexes_only_events_with_one(
    tmp_path: Path, clock: FakeClock
) -> None:
    """0005 -> 0006 on a SQLite file with events with and without ids: afterwards the
    index holds only the events with an id, a stored id is still found (the same seq
    comes back) and events without an id are stored as before."""
    path = tmp_path / "partial.db"
    url = f"sqlite+aiosqlite:///{path}"
    cfg = alembic_config(url)
    await asyncio.to_thread(command.upgrade, cfg, "0005")
    # rows as a 0005-era store wrote them (today's store writes the columns of 0007)
    now, empty = clock.now, bitmap.serialize(BitMap())
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executemany("INSERT INTO inboxes VALUES (?, ?, ?, ?, ?)",
                       [("a", 2, 2, empty, now), ("b", 1, 1, empty, now)])
        db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                       [("a", 1, "m1", b"1", now, now + TTL), ("a", 2, None, b"2", now, now + TTL),
                        ("b", 1, None, b"3", now, now + TTL)])
    await migrate(url)  # 0005 -> head
    with contextlib.closing(sqlite3.connect(path)) as db:
        [(sql,)] = db.execute("SELECT sql FROM sqlite_master WHERE name = "
                              "'uq_events_user_id_msg_id'").fetchall()
        assert sql.endswith("WHERE msg_id IS NOT NULL")
        entries = db.execute("SELECT count(*) FROM events INDEXED BY uq_events_user_id_msg_id "
                             "WHERE msg_id IS NOT NULL").fetchone()[0]
        assert entries == 1
    store = open_store(url, clock=clock)
    await store.start()
    try:
        again = await store.append([NewEvent("a", b"x", TTL, "m1"), NewEvent("a", b"4", TTL)])
        assert [(r.seq, r.duplicate) for r in again] == [(1, True), (3, False)]
        assert [e.body for e in await store.fetch("a", 0, 10)] == [b"1", b"2", b"4"]
    finally:
        await store.close()


async def test_start_without_schema_says_to_migrate(tmp_path: Path) -> None:
    store = open_store(f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    with pytest.raises(StoreError, match=r"run 'pushgate migrate' first") as caught:
        await store.start()
    assert not caught.value.retryable
    with pytest.raises(StoreUnavailable):
        await store.head("a")  # start failed: the store stays closed


def test_the_schema_module_names_the_newest_migration() -> None:
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == REVISION


@pytest.mark.parametrize("backend", BACKENDS)
async def test_start_on_a_revision_behind_says_to_migrate_and_a_newer_one_starts(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """docs/storage.md: a store on an old schema refuses to start. 0008 changed only a
    collation on MySQL (every column is there at 0007): the store started on 0007 and
    merged APNs' and FCM's reason spellings. A newer revision (a rolling upgrade's new
    version migrated first) is accepted."""
    database = contextlib.nullcontext(f"sqlite+aiosqlite:///{tmp_path}/behind.db")
    if backend == "mysql":
        server = request.getfixturevalue("mysql_server")
        database = services.mysql_database(server, services.new_database_name("_behind"))
    with database as url:
        behind = f"{int(REVISION) - 1:04d}"
        await asyncio.to_thread(command.upgrade, alembic_config(url), behind)
        store = open_store(url)
        with pytest.raises(StoreError, match=rf"revision {behind}, this version needs "
                                             rf"{REVISION}\): run 'pushgate migrate' first"):
            await store.start()
        await migrate(url)
        await run_sql(url, f"UPDATE alembic_version SET version_num = '{int(REVISION) + 1:04d}'")
        store = open_store(url)
        await store.start()
        await store.close()


def test_open_store_rejects_unknown_schemes() -> None:
    with pytest.raises(ValueError, match="postgresql"):
        open_store("postgresql://localhost/db")
    with pytest.raises(ValueError, match="pysqlite"):
        open_store("sqlite+pysqlite:///x.db")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_fresh_migrate_logs_no_driver_notes(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest,
        caplog: pytest.LogCaptureFixture) -> None:
    """MariaDB notes every named primary key ("Name 'pk_inboxes' ignored for PRIMARY
    key."), and asyncmy logged each as a warning: ten lines under every fresh
    ``pushgate migrate``. They are not shown; the driver's other warnings are."""
    import logging

    database = contextlib.nullcontext(f"sqlite+aiosqlite:///{tmp_path}/fresh.db")
    if backend == "mysql":
        server = request.getfixturevalue("mysql_server")
        database = services.mysql_database(server, services.new_database_name("_notes"))
    with database as url, caplog.at_level(logging.WARNING):
        await migrate(url)
        assert not [r for r in caplog.records if "PRIMARY key" in r.getMessage()]
        logging.getLogger("asyncmy").warning("another note")
        assert [r.getMessage() for r in caplog.records] == ["another note"]


async def test_a_connection_reset_while_the_driver_sets_it_up_is_unavailable(
        request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A MySQL endpoint that accepts and resets (a proxy in front of a dead server): when
    the reset came before asyncmy set the socket's keepalive, asyncmy raised a bare
    ``RuntimeError`` that reached the API as 500 ``internal``; it is a retryable
    ``StoreUnavailable`` (503 ``store_unavailable``)."""
    import asyncmy

    url = request.getfixturevalue("mysql_run_db")
    store = open_store(url)
    await store.start()
    try:
        await store.append([ev("reset")])

        async def reset(*args: object, **kwargs: object) -> None:
            raise RuntimeError("Transport does not expose socket instance")

        monkeypatch.setattr(asyncmy, "connect", reset)
        engine = store._engine
        assert engine is not None
        await engine.dispose()  # (the pooled connections: new ones are made)
        with pytest.raises(StoreUnavailable, match="Lost connection"):
            await store.append([ev("reset")])
        monkeypatch.undo()
        assert [r.seq for r in await store.append([ev("reset")])] == [2]
    finally:
        await store.close()
