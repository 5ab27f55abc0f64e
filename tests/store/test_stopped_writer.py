"""A writer that stops mid-transaction (its router SIGSTOPped, a partition) does not keep
the inbox row locks it took: MariaDB ends a transaction that wrote and then sends nothing
for ``IDLE_WRITE_TX_S`` (set on every connection of the store), so another router's
sends to those users go through instead of failing ``store_unavailable`` for as long as
the writer stays stopped."""

from __future__ import annotations

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from pushgate.store import NewEvent, SqlEventStore
from pushgate.store._dialects import mysql as mysql_dialect


async def test_a_stopped_writers_inbox_locks_are_released(
    mysql_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mysql_dialect, "IDLE_WRITE_TX_S", 1)
    stopped, other = SqlEventStore(mysql_db), SqlEventStore(mysql_db)
    await stopped.start()
    await other.start()
    try:
        await stopped.append([NewEvent("ann", b"1", 60)])
        engine = stopped._writer  # the store's own pool: its sessions' settings
        assert engine is not None
        conn = await engine.connect()
        try:
            await conn.begin()
            # an append's first step: ann's inbox row, locked; then the process stops
            await conn.execute(text(
                "UPDATE inboxes SET updated_at = updated_at + 1 WHERE user_id = 'ann'"))
            appended = await other.append([NewEvent("ann", b"2", 60)])
            assert [a.seq for a in appended] == [2]
            # the writer, resumed, finds its transaction ended: what it wrote is gone
            with pytest.raises(sa_exc.OperationalError):
                await conn.commit()
        finally:
            await conn.invalidate()
            await conn.close()
    finally:
        await stopped.close()
        await other.close()
