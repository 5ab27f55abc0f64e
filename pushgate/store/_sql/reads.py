"""Reading events and inbox heads (mixed into :class:`~pushgate.store.sql.SqlEventStore`).
Each call is one read-only statement; on a SQLite file ``fetch`` is one thread hop to
:class:`~pushgate.store._sqlite_read.OneHopReader` instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, select

from .._dialects import chunks
from ..base import Event, StoreUnavailable
from ..schema import events as events_t
from ..schema import inboxes as inboxes_t
from .tx import SqlTransactions, _sqlite_errors


class SqlReads(SqlTransactions):
    """``fetch``, ``head`` and ``heads``."""

    async def fetch(self, user: str, after: int, limit: int) -> list[Event]:
        """See :meth:`EventStore.fetch`; expired events are skipped even before cleanup."""
        if limit <= 0:
            return []
        now = self._clock()
        reader = self._reader
        if reader is not None:  # SQLite file: one thread hop
            if self._engine is None:
                raise StoreUnavailable("event store is not started or already closed")
            with _sqlite_errors():
                found = await reader.fetch(user, after, now, limit)
            return [Event(user, *r) for r in found]
        ev = events_t.c
        stmt = (
            select(ev.seq, ev.msg_id, ev.body, ev.created_at, ev.expires_at)
            .where(ev.user_id == user, ev.seq > after, ev.expires_at > now)
            .order_by(ev.seq)
            .limit(limit)
        )
        async with self._tx(write=False) as conn:
            rows = (await conn.execute(stmt)).all()
        return [Event(user, r.seq, r.msg_id, r.body, r.created_at, r.expires_at) for r in rows]

    async def head(self, user: str) -> int | None:
        async with self._tx(write=False) as conn:
            return await conn.scalar(
                select(inboxes_t.c.head_seq).where(inboxes_t.c.user_id == user)
            )

    async def heads(self, users: Sequence[str]) -> dict[str, int]:
        ib = inboxes_t.c
        stmt = select(ib.user_id, ib.head_seq).where(
            ib.user_id.in_(bindparam("users", expanding=True))
        )
        result: dict[str, int] = {}
        async with self._tx(write=False) as conn:
            for part in chunks(list(dict.fromkeys(users)), self._dialect.max_params):
                result.update((r[0], r[1]) for r in await conn.execute(stmt, {"users": list(part)}))
        return result
