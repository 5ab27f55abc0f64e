"""Backends for the contract tests: SQLite always (a fresh migrated file per test);
MySQL/MariaDB too when ``PUSHGATE_TEST_MYSQL_URL`` is set (its tables are dropped and
re-created for each test, so point it at a throw-away database)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from pushgate.store import SqlEventStore, migrate, open_store

MYSQL_URL = os.environ.get("PUSHGATE_TEST_MYSQL_URL")


class FakeClock:
    """Injectable ``time.time``: TTL tests move time instead of sleeping."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def _reset_mysql(url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for table in ("events", "inboxes", "alembic_version"):
                await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    finally:
        await engine.dispose()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "mysql",
            marks=pytest.mark.skipif(not MYSQL_URL, reason="PUSHGATE_TEST_MYSQL_URL not set"),
        ),
    ]
)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/data/events.db"  # data/ does not exist yet
    else:
        assert MYSQL_URL
        url = MYSQL_URL
        await _reset_mysql(url)
    await migrate(url)
    return url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


StoreFactory = Callable[[], Awaitable[SqlEventStore]]


@pytest.fixture
async def make_store(store_url: str, clock: FakeClock) -> AsyncIterator[StoreFactory]:
    """Open (and at teardown close) any number of stores on the test's database."""
    stores: list[SqlEventStore] = []

    async def make() -> SqlEventStore:
        store = open_store(store_url, clock=clock)
        assert isinstance(store, SqlEventStore)
        await store.start()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


@pytest.fixture
async def store(make_store: StoreFactory) -> SqlEventStore:
    return await make_store()
