"""Named leases (:class:`~pushgate.store.base.Leases`, mixed into
:class:`~pushgate.store.sql.SqlEventStore`): one holder per name until its lease
expires; of two racing first holders, the primary key lets one win.
"""

from __future__ import annotations

from sqlalchemy import delete, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from ..base import MAX_KEY_LEN
from ..schema import leases as leases_t
from .tx import SqlTransactions


class SqlLeases(SqlTransactions):
    """``acquire_lease`` and ``release_lease``."""

    async def acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """See :meth:`Leases.acquire_lease`. ``ValueError`` for an empty or too long
        name/holder or ``ttl_s <= 0``."""
        _check_key("name", name)
        _check_key("holder", holder)
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        now = self._clock()
        c = leases_t.c

        async def body(conn: AsyncConnection) -> bool:
            stmt = select(c.holder, c.expires_at).where(c.name == name)
            row = (await conn.execute(self._dialect.lock(stmt, leases_t))).first()
            if row is None:
                try:
                    async with conn.begin_nested():  # a racing first holder wins
                        await conn.execute(
                            insert(leases_t).values(name=name, holder=holder, expires_at=now + ttl_s)
                        )
                except sa_exc.IntegrityError:
                    return False
                return True
            if row.holder != holder and row.expires_at > now:
                return False
            await conn.execute(
                update(leases_t)
                .where(c.name == name)
                .values(holder=holder, expires_at=now + ttl_s)
            )
            return True

        return await self._write(body)

    async def release_lease(self, name: str, holder: str) -> bool:
        """See :meth:`Leases.release_lease`."""
        c = leases_t.c

        async def body(conn: AsyncConnection) -> bool:
            result = await conn.execute(
                delete(leases_t).where(c.name == name, c.holder == holder)
            )
            return bool(result.rowcount)

        return await self._write(body)


def _check_key(name: str, value: str) -> None:
    if not value or len(value) > MAX_KEY_LEN:
        raise ValueError(f"{name} must be 1..{MAX_KEY_LEN} characters, got {len(value)}")
