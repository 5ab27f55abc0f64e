"""Backends for the contract tests: SQLite (a fresh migrated file per test) and
MySQL/MariaDB (this run's own database, migrated once, emptied before each test).
The MySQL server is provisioned by ``tests/services.py``: without one the MySQL
variants are skipped with the reason, except in CI where they fail."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from pushgate.store import NewEvent, SqlEventStore, bitmap, migrate, open_store
from tests import services

BACKENDS = ["sqlite", "mysql"]
TTL = 3600


def ev(user: str, id: str | None = None, *, ttl: int = TTL, body: bytes = b'{"n":1}') -> NewEvent:
    return NewEvent(user=user, body=body, ttl_s=ttl, id=id)


def read_set(data: bytes) -> set[int]:
    return set(bitmap.deserialize(data))


class FakeClock:
    """Injectable ``time.time``: TTL tests move time instead of sleeping."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=BACKENDS)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/data/events.db"  # data/ does not exist yet
        await migrate(url)
        return url
    url: str = request.getfixturevalue("mysql_run_db")
    services.empty_tables(url)
    return url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


StoreFactory = Callable[..., Awaitable[SqlEventStore]]


@pytest.fixture
async def make_store(store_url: str, clock: FakeClock) -> AsyncIterator[StoreFactory]:
    """Open (and at teardown close) any number of stores on the test's database."""
    stores: list[SqlEventStore] = []

    async def make(**opts: object) -> SqlEventStore:
        store = open_store(store_url, clock=clock, **opts)
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
