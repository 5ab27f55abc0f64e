"""Device registrations (:class:`~pushgate.store.base.DeviceStore`, mixed into
:class:`~pushgate.store.sql.SqlEventStore`): one row per ``(platform, token)``, moved
to the user and app that registered it last.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .._dialects import chunks
from ..base import Device, check_device
from ..schema import devices as devices_t
from .tx import SqlTransactions


class SqlDevices(SqlTransactions):
    """``register_device``, ``remove_device``, ``remove_dead_token`` and ``devices``."""

    async def register_device(self, user: str, app: str, platform: str, token: str) -> Device:
        """See :meth:`DeviceStore.register_device`."""
        check_device(user, app, platform, token)
        now = self._clock()
        d = self._dialect

        async def body(conn: AsyncConnection) -> Device:
            await d.insert_rows(
                conn, "upsert_device", lambda: d.upsert_device(devices_t),
                [(platform, token, user, app, now)],
            )
            return Device(user, app, platform, token, now)

        return await self._write(body)

    async def remove_device(self, user: str, app: str, platform: str, token: str) -> bool:
        """See :meth:`DeviceStore.remove_device`."""
        check_device(user, app, platform, token)
        c = devices_t.c
        stmt = delete(devices_t).where(
            c.platform == platform, c.token == token, c.user_id == user, c.app == app
        )
        return await self._write(lambda conn: self._rowcount(conn, stmt))

    async def remove_dead_token(self, platform: str, token: str) -> bool:
        """See :meth:`DeviceStore.remove_dead_token`."""
        check_device("-", "-", platform, token)
        c = devices_t.c
        stmt = delete(devices_t).where(c.platform == platform, c.token == token)
        return await self._write(lambda conn: self._rowcount(conn, stmt))

    async def devices(self, users: Sequence[str], app: str | None = None) -> list[Device]:
        """See :meth:`DeviceStore.devices`."""
        async with self._tx(write=False) as conn:
            return await self._devices_in(conn, list(dict.fromkeys(users)), app)

    async def _devices_in(self, conn: AsyncConnection, users: list[str],
                          app: str | None = None) -> list[Device]:
        c = devices_t.c
        stmt = self._dialect.by_index(
            select(c.user_id, c.app, c.platform, c.token, c.updated_at).where(
                c.user_id.in_(bindparam("users", expanding=True))),
            devices_t, "ix_devices_user_id_app")
        if app is not None:
            stmt = stmt.where(c.app == app)
        found: list[Device] = []
        for part in chunks(users, self._dialect.max_params):
            found.extend(Device(*r) for r in await conn.execute(stmt, {"users": list(part)}))
        found.sort(key=lambda d: (d.user, d.app, d.platform, d.token))
        return found

    @staticmethod
    async def _rowcount(conn: AsyncConnection, stmt: Any) -> bool:
        return bool((await conn.execute(stmt)).rowcount)
