"""store_session_idle_timeout_s: a pooled MySQL connection idle longer than the limit
is closed at checkout and replaced, not handed out again (what a stopped, restarted or
partitioned server left behind is not reused forever); a busy one is reused."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from pushgate.store import SqlEventStore
from tests.support.waiting import wait_for

IDLE = 0.3


async def connection_id(store: SqlEventStore) -> int:
    engine = store._engine  # the store's pool, as its own calls use it
    assert engine is not None
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT CONNECTION_ID()")))


async def server_has(store: SqlEventStore, cid: int) -> bool:
    engine = store._engine
    assert engine is not None
    async with engine.connect() as conn:
        n = await conn.scalar(text(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = :id"), {"id": cid})
    return bool(n)


async def test_an_idle_pooled_connection_is_replaced(mysql_db: str) -> None:
    store = SqlEventStore(mysql_db, session_idle_timeout_s=IDLE)
    await store.start()
    try:
        first = await connection_id(store)
        assert await connection_id(store) == first  # reused while busy
        await asyncio.sleep(IDLE * 2)  # the time under test: idle past the limit
        second = await connection_id(store)
        assert second != first
        await wait_for(lambda: server_has(store, first), 10, "the idle connection closed",
                       until=lambda present: not present)
    finally:
        await store.close()


async def test_no_limit_keeps_the_connection(mysql_db: str) -> None:
    store = SqlEventStore(mysql_db, session_idle_timeout_s=0)
    await store.start()
    try:
        first = await connection_id(store)
        await asyncio.sleep(IDLE * 2)
        assert await connection_id(store) == first
    finally:
        await store.close()
