"""Lock conflicts on MySQL/MariaDB: a transaction rolled back by a lock wait timeout (or
a deadlock) is run again inside the store; one that keeps failing raises the retryable
StoreUnavailable."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from pushgate.store import NewEvent, SqlEventStore, StoreUnavailable


def ev(user: str) -> NewEvent:
    return NewEvent(user=user, body=b"{}", ttl_s=3600)


@contextlib.asynccontextmanager
async def row_locked(url: str, user: str) -> AsyncIterator[asyncio.Event]:
    """Hold the inbox row of ``user`` locked (another connection, open transaction) until
    the yielded event is set or the block ends."""
    engine = create_async_engine(url)
    release = asyncio.Event()
    locked = asyncio.Event()

    async def hold() -> None:
        async with engine.connect() as conn, conn.begin():
            await conn.exec_driver_sql(
                "SELECT head_seq FROM inboxes WHERE user_id = %s FOR UPDATE", (user,)
            )
            locked.set()
            await release.wait()

    task = asyncio.create_task(hold())
    try:
        await locked.wait()
        yield release
    finally:
        release.set()
        await task
        await engine.dispose()


@pytest.fixture
async def store(mysql_db: str) -> AsyncIterator[SqlEventStore]:
    store = SqlEventStore(mysql_db, lock_wait_timeout_s=1, max_attempts=4, retry_base_s=0.05)
    await store.start()
    await store.append([ev("a")])
    yield store
    await store.close()


async def test_lock_wait_timeout_is_retried_inside_the_store(
    store: SqlEventStore, mysql_db: str
) -> None:
    async with row_locked(mysql_db, "a") as release:
        asyncio.get_running_loop().call_later(1.5, release.set)
        [result] = await store.append([ev("a")])
    assert result.seq == 2
    assert store.conflicts >= 1


async def test_conflicts_that_persist_raise_store_unavailable(
    store: SqlEventStore, mysql_db: str
) -> None:
    store.max_attempts = 2
    async with row_locked(mysql_db, "a"):
        with pytest.raises(StoreUnavailable, match="gave up after 2 attempts") as caught:
            await store.mark_read("a", [1], [])
        assert caught.value.retryable
    assert (await store.mark_read("a", [1], [])).unread == 0
