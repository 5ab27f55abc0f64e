"""Deleting expired events (mixed into :class:`~pushgate.store.sql.SqlEventStore`;
:class:`~pushgate.store.cleanup.Cleaner` calls it on a schedule). The ``expiries`` rows
(:mod:`pushgate.store.expiry`) list the events in expiry order; a batch deletes its
events by primary key and fixes each affected inbox in one transaction.
"""

from __future__ import annotations

import logging

from pyroaring import BitMap
from sqlalchemy import and_, bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import bitmap, expiry
from ..schema import events as events_t
from ..schema import expiries as expiries_t
from ..schema import inboxes as inboxes_t
from .append import _EMPTY, _insert_expiries
from .tx import SqlTransactions

log = logging.getLogger("pushgate.store")


class SqlCleanup(SqlTransactions):
    """``cleanup_expired``."""

    async def cleanup_reports(self, conn: AsyncConnection, now: float, batch: int) -> int:
        raise NotImplementedError  # SqlReports

    async def cleanup_expired(self, now: float, batch: int) -> int:
        """See :meth:`EventStore.cleanup_expired`. Reads the soonest-expired
        ``expiries`` rows (primary-key order = expiry order; locked, skipping rows another
        cleaner holds), takes their events up to ``batch`` (a row it takes only part of is
        replaced by one listing the rest), deletes those events by primary key and fixes
        each affected inbox's ``live`` and read bitmap, all in one transaction."""
        if batch <= 0:
            return 0

        async def body(conn: AsyncConnection) -> int:
            taken = await self._expired_groups(conn, now, batch)
            if not taken:
                return 0
            d = self._dialect
            x = expiries_t.c
            keys: list[tuple[str, int]] = []
            rest: list[tuple[float, str, int, int, bytes]] = []
            want = batch
            for row in taken:
                runs = expiry.members(row[4])
                part, left = expiry.take(runs, want)
                keys += expiry.keys(part)
                want -= row[3] - sum(r[2] - r[1] + 1 for r in left)
                if left:
                    n = sum(r[2] - r[1] + 1 for r in left)
                    rest.append((row[0], left[0][0], left[0][1], n, expiry.encode(left)))
            gone: dict[str, BitMap] = {}  # what leaves the read bitmaps
            count: dict[str, int] = {}
            for user, seq in keys:
                count[user] = count.get(user, 0) + 1
                if seq <= bitmap.MAX_SEQ:  # (above, never marked: the bitmap is 32-bit;
                    # adding one raised OverflowError and stalled the cleanup of everyone)
                    gone.setdefault(user, BitMap()).add(seq)
            # Events first, inboxes last: the DELETE (random primary-key pages, possibly
            # read from disk) runs before any inbox row is locked, so sends to the same
            # users wait at most for the short inbox update, not for the whole batch.
            deleted = await d.delete_events(conn, events_t, keys)
            await conn.execute(
                delete(expiries_t).where(x.expires_at == bindparam("e"),
                                         x.user_id == bindparam("u"), x.seq == bindparam("s")),
                [{"e": r[0], "u": r[1], "s": r[2]} for r in taken])
            if rest:
                await d.insert_rows(conn, "insert_expiries", _insert_expiries, rest)
            users = sorted(count)
            bitmaps = await d.release_expired(
                conn, inboxes_t, [(u, count[u]) for u in users], now)
            if deleted != len(keys):  # events gone by other means: count the inboxes again
                log.warning("%d of %d expired events listed for cleanup were already gone; "
                            "recounting their inboxes", len(keys) - deleted, len(keys))
                await self._recount(conn, users)
            changed = []
            for user, blob in bitmaps.items():
                if blob != _EMPTY and user in gone:
                    read = bitmap.deserialize(blob)
                    kept = read - gone[user]
                    if len(kept) != len(read):
                        changed.append((user, bitmap.serialize(kept)))
            if changed:
                await d.set_read_bitmaps(conn, inboxes_t, changed, now)
            return deleted

        return await self._write(body)

    async def cleanup_expired_reports(self, now: float, batch: int) -> int:
        """See :meth:`EventStore.cleanup_expired_reports`."""
        if batch <= 0:
            return 0

        async def body(conn: AsyncConnection) -> int:
            return await self.cleanup_reports(conn, now, batch)

        return await self._write(body)

    async def _expired_groups(self, conn: AsyncConnection, now: float,
                              batch: int) -> list[tuple[float, str, int, int, bytes]]:
        """Expired ``expiries`` rows, soonest first, while their events fit ``batch`` plus
        the row that crosses it; read a page at a time (first a few: a row holds up to
        250 events)."""
        x = expiries_t.c
        columns = select(x.expires_at, x.user_id, x.seq, x.n, x.members)
        taken: list[tuple[float, str, int, int, bytes]] = []
        events = 0
        page = min(batch, 16)
        after: tuple[float, str, int] | None = None
        while events < batch:
            cond = x.expires_at <= now
            if after is not None:
                e, u, q = after
                cond = and_(cond, or_(x.expires_at > e,
                                      and_(x.expires_at == e, x.user_id > u),
                                      and_(x.expires_at == e, x.user_id == u, x.seq > q)))
            stmt = self._dialect.lock_skip(
                columns.where(cond).order_by(x.expires_at, x.user_id, x.seq).limit(page))
            rows = [tuple(r) for r in (await conn.execute(stmt)).all()]
            for r in rows:
                taken.append(r)
                events += r[3]
                if events >= batch:
                    break
            if len(rows) < page:
                break
            after = (rows[-1][0], rows[-1][1], rows[-1][2])
            page = max(1, batch - events)
        return taken

    async def _recount(self, conn: AsyncConnection, users: list[str]) -> None:
        ib, ev = inboxes_t.c, events_t.c
        live = select(func.count()).where(ev.user_id == ib.user_id).scalar_subquery()
        await conn.execute(update(inboxes_t).where(ib.user_id.in_(users)).values(live=live))
