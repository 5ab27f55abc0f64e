"""Delivery reports (mixed into :class:`~pushgate.store.sql.SqlEventStore`): the batched
counter upsert of a flush (with the delivered / acked marks of events), the reads of
the API, and the read counts that :meth:`mark_read` adds. See
:class:`~pushgate.store.base.ReportStore` for the contract.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pyroaring import BitMap
from sqlalchemy import bindparam, delete, func, select, tuple_, update
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import bitmap
from .._dialects import chunks
from ..base import ACKED, DELIVERED, MAX_REASON_LEN, Report, ReportDelta, ReportUser
from ..schema import events as events_t
from ..schema import inboxes as inboxes_t
from ..schema import report_reasons as reasons_t
from ..schema import reports as reports_t
from .tx import SqlTransactions

# deltas columns of ``reports`` (``read`` is ``read_n``: READ is reserved in MySQL)
_COLUMNS = ("addressed", "stored", "duplicates", "delivered", "acked", "pushed", "push_failed",
            "read_n")


def _merge(into: dict[str, dict[str, Any]], report: str, column: str, n: int,
           expires_at: float) -> None:
    row = into.get(report)
    if row is None:
        row = into[report] = dict.fromkeys(_COLUMNS, 0)
        row["expires_at"] = 0.0
        row["reasons"] = {}
    row[column] += n
    if expires_at > row["expires_at"]:
        row["expires_at"] = expires_at


class SqlReports(SqlTransactions):
    """``record_reports``, ``report``, ``latest_reports``, ``report_user``."""

    async def record_reports(self, deltas: Mapping[str, ReportDelta],
                             delivered: Sequence[tuple[str, int]],
                             acked: Sequence[tuple[str, int]]) -> None:
        """See :meth:`ReportStore.record_reports`."""
        rows: dict[str, dict[str, Any]] = {}
        for report, d in deltas.items():
            for column in ("addressed", "stored", "duplicates", "delivered", "pushed",
                           "push_failed"):
                _merge(rows, report, column, getattr(d, column), d.expires_at)
            rows[report]["reasons"].update(d.reasons)
        if not rows and not delivered and not acked:
            return
        now = self._clock()

        async def body(conn: AsyncConnection) -> None:
            merged = {k: {**v, "reasons": dict(v["reasons"])} for k, v in rows.items()}
            if delivered or acked:
                await self._apply_marks(conn, merged, delivered, acked)
            if merged:
                await self._upsert_reports(conn, merged, now)

        await self._write(body)

    async def _apply_marks(self, conn: AsyncConnection, rows: dict[str, dict[str, Any]],
                           delivered: Sequence[tuple[str, int]],
                           acked: Sequence[tuple[str, int]]) -> None:
        want: dict[tuple[str, int], int] = {}
        for key in delivered:
            want[key] = want.get(key, 0) | DELIVERED
        for key in acked:
            want[key] = want.get(key, 0) | ACKED | DELIVERED  # acked: it was delivered
        ev = events_t.c
        stmt = self._dialect.lock(
            select(ev.user_id, ev.seq, ev.report, ev.marks, ev.expires_at).where(
                tuple_(ev.user_id, ev.seq).in_(bindparam("keys", expanding=True))), events_t)
        changes: list[dict[str, Any]] = []
        for part in chunks(sorted(want), self._dialect.max_params // 2):
            for user, seq, report, marks, expires_at in await conn.execute(
                    stmt, {"keys": list(part)}):
                new = marks | want[(user, seq)]
                if new == marks:
                    continue
                changes.append({"u": user, "s": seq, "m": new})
                if report is None:
                    continue
                if new & DELIVERED and not marks & DELIVERED:
                    _merge(rows, report, "delivered", 1, expires_at)
                if new & ACKED and not marks & ACKED:
                    _merge(rows, report, "acked", 1, expires_at)
        if changes:
            await conn.execute(
                update(events_t).where(ev.user_id == bindparam("u"), ev.seq == bindparam("s"))
                .values(marks=bindparam("m")), changes)

    async def _upsert_reports(self, conn: AsyncConnection, rows: dict[str, dict[str, Any]],
                              now: float) -> None:
        values = [{"report": r, "created_at": now, "updated_at": now,
                   "expires_at": v["expires_at"], **{c: v[c] for c in _COLUMNS}}
                  for r, v in sorted(rows.items())]  # sorted: one lock order everywhere
        reasons = [{"report": r, "reason": reason[:MAX_REASON_LEN], "n": n}
                   for r, v in sorted(rows.items()) for reason, n in sorted(v["reasons"].items())
                   if n]
        t = reports_t.c
        stmt: Any
        rstmt: Any
        if self._dialect.name == "mysql":
            ins = mysql.insert(reports_t)
            stmt = ins.on_duplicate_key_update(
                updated_at=ins.inserted.updated_at,
                expires_at=_greatest(t.expires_at, ins.inserted.expires_at, "mysql"),
                **{c: getattr(t, c) + getattr(ins.inserted, c) for c in _COLUMNS})
            rins = mysql.insert(reasons_t)
            rstmt = rins.on_duplicate_key_update(n=reasons_t.c.n + rins.inserted.n)
        else:
            sins = sqlite.insert(reports_t)
            stmt = sins.on_conflict_do_update(
                index_elements=[t.report],
                set_={"updated_at": sins.excluded.updated_at,
                      "expires_at": _greatest(t.expires_at, sins.excluded.expires_at, "sqlite"),
                      **{c: getattr(t, c) + getattr(sins.excluded, c) for c in _COLUMNS}})
            srins = sqlite.insert(reasons_t)
            rstmt = srins.on_conflict_do_update(
                index_elements=[reasons_t.c.report, reasons_t.c.reason],
                set_={"n": reasons_t.c.n + srins.excluded.n})
        await conn.execute(stmt, values)
        if reasons:
            await conn.execute(rstmt, reasons)

    async def count_reads(self, conn: AsyncConnection, user: str, found: BitMap) -> None:
        """Add the newly read seqs ``found`` of ``user`` to their reports' ``read_n``
        (called by ``mark_read`` in its transaction)."""
        ev = events_t.c
        stmt = select(ev.seq, ev.report, ev.expires_at).where(
            ev.user_id == user, ev.report.is_not(None))
        if len(found) <= self._dialect.max_params:
            stmt = stmt.where(ev.seq.in_(list(found)))
        else:
            stmt = stmt.where(ev.seq.between(found.min(), found.max()))
        rows: dict[str, dict[str, Any]] = {}
        for seq, report, expires_at in await conn.execute(stmt):
            if seq in found:
                _merge(rows, report, "read_n", 1, expires_at)
        if rows:
            await self._upsert_reports(conn, rows, self._clock())

    async def cleanup_reports(self, conn: AsyncConnection, now: float, batch: int) -> int:
        """Delete up to ``batch`` reports whose events have all expired (in the TTL
        cleanup's transaction); returns how many."""
        t = reports_t.c
        ids = list(await conn.scalars(
            select(t.report).where(t.expires_at <= now).order_by(t.expires_at).limit(batch)))
        if ids:
            await conn.execute(delete(reasons_t).where(reasons_t.c.report.in_(ids)))
            await conn.execute(delete(reports_t).where(t.report.in_(ids)))
        return len(ids)

    # -- reads -----------------------------------------------------------------------------

    async def report(self, report: str) -> Report | None:
        """See :meth:`ReportStore.report`."""
        found = await self._reports(reports_t.c.report == report, None)
        return found[0] if found else None

    async def latest_reports(self, limit: int) -> list[Report]:
        """See :meth:`ReportStore.latest_reports`."""
        if limit <= 0:
            return []
        return await self._reports(None, limit)

    async def _reports(self, where: Any, limit: int | None) -> list[Report]:
        t = reports_t.c
        stmt = select(t.report, t.created_at, t.updated_at, t.expires_at,
                      *(getattr(t, c) for c in _COLUMNS))
        if where is not None:
            stmt = stmt.where(where)
        if limit is not None:
            stmt = stmt.order_by(t.created_at.desc(), t.report.desc()).limit(limit)
        async with self._tx(write=False) as conn:
            rows = (await conn.execute(stmt)).all()
            reasons: dict[str, dict[str, int]] = {r[0]: {} for r in rows}
            if rows:
                rt = reasons_t.c
                for report, reason, n in await conn.execute(
                        select(rt.report, rt.reason, rt.n).where(rt.report.in_(list(reasons)))):
                    reasons[report][reason] = n
        return [Report(r[0], r[1], r[2], r[3], addressed=r[4], stored=r[5], duplicates=r[6],
                       delivered=r[7], acked=r[8], pushed=r[9], push_failed=r[10], read=r[11],
                       failed_by_reason=reasons[r[0]])
                for r in rows]

    async def report_user(self, report: str, user: str) -> ReportUser | None:
        """See :meth:`ReportStore.report_user`."""
        ev, ib = events_t.c, inboxes_t.c
        async with self._tx(write=False) as conn:
            row = (await conn.execute(
                select(ev.seq, ev.created_at, ev.expires_at, ev.marks)
                .where(ev.user_id == user, ev.report == report).order_by(ev.seq).limit(1))
            ).first()
            if row is None:
                return None
            raw = await conn.scalar(select(ib.read_bitmap).where(ib.user_id == user))
        read = raw is not None and row.seq in bitmap.deserialize(raw)
        return ReportUser(report, user, row.seq, row.created_at, row.expires_at,
                          bool(row.marks & DELIVERED), bool(row.marks & ACKED), read)


def _greatest(a: Any, b: Any, dialect: str) -> Any:
    return func.greatest(a, b) if dialect == "mysql" else func.max(a, b)
