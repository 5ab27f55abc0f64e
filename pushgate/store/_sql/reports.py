"""Delivery reports (mixed into :class:`~pushgate.store.sql.SqlEventStore`): the batched
counter upsert of a flush (with the delivered / acked marks of events), the reads of
the API, and the read counts that :meth:`mark_read` adds. See
:class:`~pushgate.store.base.ReportStore` for the contract.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import bitmap
from .._dialects import chunks
from .._dialects.base import Dialect
from .._sqlite_append import insert_many
from ..base import (
    ACKED,
    DELIVERED,
    MAX_REASON_LEN,
    Report,
    ReportDelta,
    ReportUser,
    StoreUnavailable,
)
from ..schema import events as events_t
from ..schema import inboxes as inboxes_t
from ..schema import report_expiries as report_expiries_t
from ..schema import report_reasons as reasons_t
from ..schema import reports as reports_t
from .tx import SqlTransactions, _sqlite_errors

# deltas columns of ``reports`` (``read`` is ``read_n``: READ is reserved in MySQL)
_COLUMNS = ("addressed", "stored", "duplicates", "delivered", "acked", "pushed", "push_failed",
            "read_n")


class SqlReports(SqlTransactions):
    """``record_reports``, ``report``, ``latest_reports``, ``report_user``."""

    async def record_reports(self, deltas: Mapping[str, ReportDelta],
                             delivered: Sequence[tuple[str, int, bool]],
                             acked: Sequence[tuple[str, int]],
                             sends: Sequence[tuple[str, int, int, int, int, float, float]] = (),
                             ) -> None:
        """See :meth:`ReportStore.record_reports`. On a SQLite file: raw ``sqlite3``
        statements in one call to the appender's thread (through SQLAlchemy the upsert
        cost ~5x more per report, measured in docs/benchmarks.md)."""
        if not deltas and not sends and not delivered and not acked:
            return
        now = self._clock()
        values = _report_rows(deltas, now)
        if sends:
            # created at the send's own time (the earliest send of the report wins), not
            # the flush's: the latest reports are listed newest first
            values += [(r, t, now, e, a, s, d, n, 0, 0, 0, 0) for r, a, s, d, n, e, t in sends]
        reasons = _reason_rows(deltas)
        hop = self._one_hop
        if hop is not None:
            async with self._write_lock:
                if self._engine is None:
                    raise StoreUnavailable("event store is not started or already closed")
                with _sqlite_errors():
                    await hop.transaction(_sqlite_record, values, reasons, delivered, acked, now)
            return

        async def body(conn: AsyncConnection) -> None:
            rows = list(values)
            if delivered:
                # one statement per chunk, not one per event: in cluster mode every
                # delivered event is here (the router looks its sessions up after the
                # commit), and an executemany UPDATE is a round trip per row
                ev = events_t.c
                key = tuple_(ev.user_id, ev.seq)
                for mark, keys in ((ev.marks.op("|")(DELIVERED),
                                    sorted({(u, s) for u, s, d in delivered if d})),
                                   (ev.marks.op("&")(~DELIVERED),
                                    sorted({(u, s) for u, s, d in delivered if not d}))):
                    for part in chunks(keys, self._dialect.max_params // 2):
                        await conn.execute(update(events_t).where(key.in_(part))
                                           .values(marks=mark))
            if acked:
                rows += _report_rows(await self._apply_acks(conn, acked), now)
            if rows:
                await self._upsert_reports(conn, rows, reasons)

        await self._write(body)

    async def _apply_acks(self, conn: AsyncConnection,
                          acked: Sequence[tuple[str, int]]) -> dict[str, ReportDelta]:
        """Set the ACKED mark of the events; the reports' ``acked`` deltas."""
        ev = events_t.c
        stmt = self._dialect.lock(
            select(ev.user_id, ev.seq, ev.report, ev.marks, ev.expires_at).where(
                tuple_(ev.user_id, ev.seq).in_(bindparam("keys", expanding=True))), events_t)
        changes: list[dict[str, Any]] = []
        out: dict[str, ReportDelta] = {}
        for part in chunks(sorted(set(acked)), self._dialect.max_params // 2):
            for user, seq, report, marks, expires_at in await conn.execute(
                    stmt, {"keys": list(part)}):
                if marks & ACKED:
                    continue
                changes.append({"u": user, "s": seq, "m": marks | ACKED})
                if report is not None:
                    _add_ack(out, report, expires_at)
        if changes:
            await conn.execute(
                update(events_t).where(ev.user_id == bindparam("u"), ev.seq == bindparam("s"))
                .values(marks=bindparam("m")), changes)
        return out

    async def _upsert_reports(self, conn: AsyncConnection, values: list[tuple[Any, ...]],
                              reasons: list[tuple[str, str, int]]) -> None:
        t = reports_t.c
        stmt: Any
        rstmt: Any
        if self._dialect.name == "mysql":
            ins = mysql.insert(reports_t)
            stmt = ins.on_duplicate_key_update(
                created_at=func.least(t.created_at, ins.inserted.created_at),
                updated_at=ins.inserted.updated_at,
                expires_at=func.greatest(t.expires_at, ins.inserted.expires_at),
                **{c: getattr(t, c) + getattr(ins.inserted, c) for c in _COLUMNS})
            rins = mysql.insert(reasons_t)
            rstmt = rins.on_duplicate_key_update(n=reasons_t.c.n + rins.inserted.n)
        else:
            sins = sqlite.insert(reports_t)
            stmt = sins.on_conflict_do_update(
                index_elements=[t.report],
                set_={"created_at": func.min(t.created_at, sins.excluded.created_at),
                      "updated_at": sins.excluded.updated_at,
                      "expires_at": func.max(t.expires_at, sins.excluded.expires_at),
                      **{c: getattr(t, c) + getattr(sins.excluded, c) for c in _COLUMNS}})
            srins = sqlite.insert(reasons_t)
            rstmt = srins.on_conflict_do_update(
                index_elements=[reasons_t.c.report, reasons_t.c.reason],
                set_={"n": reasons_t.c.n + srins.excluded.n})
        names = ("report", "created_at", "updated_at", "expires_at", *_COLUMNS)
        # sorted: one lock order everywhere (two processes upserting the same reports)
        await conn.execute(stmt, [dict(zip(names, v, strict=True)) for v in sorted(values)])
        if reasons:
            await conn.execute(rstmt, [{"report": r, "reason": reason, "n": n}
                                       for r, reason, n in sorted(reasons)])
        expiry_rows = _expiry_rows(values)
        if expiry_rows:
            x = report_expiries_t.c
            found = set((await conn.execute(
                select(x.expires_at, x.report).where(
                    tuple_(x.expires_at, x.report).in_([r[:2] for r in expiry_rows])))).all())
            fresh = [r for r in expiry_rows if r[:2] not in found]
            if fresh:
                await conn.execute(insert(report_expiries_t), [
                    {"expires_at": e, "report": r, "members": m} for e, r, m in fresh])

    async def count_reads(self, conn: AsyncConnection,
                          reads: Sequence[tuple[str, float]]) -> None:
        """Add one to ``read`` of the report of each newly read event in ``reads``
        (``(report, expires_at)`` of the event; called by ``mark_read`` in its
        transaction)."""
        deltas: dict[str, ReportDelta] = {}
        for report, expires_at in reads:
            d = deltas.get(report)
            if d is None:
                d = deltas[report] = ReportDelta()
            d.read += 1
            if expires_at > d.expires_at:
                d.expires_at = expires_at
        await self._upsert_reports(conn, _report_rows(deltas, self._clock()), [])

    async def cleanup_reports(self, conn: AsyncConnection, now: float, batch: int) -> int:
        """Delete the reports listed by expired ``report_expiries`` rows (up to about
        ``batch`` of them) whose ``expires_at`` has passed (a report a later send kept
        alive is listed again by a later row), and those rows, in the TTL cleanup's
        transaction; returns how many rows and reports were deleted."""
        x, t = report_expiries_t.c, reports_t.c
        # a row lists up to EXPIRY_GROUP reports, usually far fewer (one row per flush
        # of the counts): rows are taken until they list about ``batch`` reports
        rows = (await conn.execute(self._dialect.lock_skip(
            select(x.expires_at, x.report, x.members).where(x.expires_at <= now)
            .order_by(x.expires_at, x.report).limit(max(1, batch // 10))))).all()
        if not rows:
            return 0
        groups: list[Any] = []
        members: set[str] = set()
        for g in rows:
            if groups and len(members) >= batch:
                break
            groups.append(g)
            members.update(orjson.loads(g.members))
        listed = sorted(members)
        gone: list[str] = []
        for part in chunks(listed, self._dialect.max_params):
            gone += await conn.scalars(
                select(t.report).where(t.report.in_(list(part)), t.expires_at <= now))
        for part in chunks(gone, self._dialect.max_params):
            await conn.execute(delete(reasons_t).where(reasons_t.c.report.in_(list(part))))
            await conn.execute(delete(reports_t).where(t.report.in_(list(part))))
        await conn.execute(
            delete(report_expiries_t).where(x.expires_at == bindparam("e"),
                                            x.report == bindparam("r")),
            [{"e": g.expires_at, "r": g.report} for g in groups])
        return len(groups) + len(gone)

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
                .where(ev.user_id == user, ev.report == report,
                       ev.expires_at > self._clock())  # (expired: none, as fetch has it)
                .order_by(ev.seq).limit(1))
            ).first()
            if row is None:
                return None
            raw = await conn.scalar(select(ib.read_bitmap).where(ib.user_id == user))
        read = raw is not None and row.seq in bitmap.deserialize(raw)
        return ReportUser(report, user, row.seq, row.created_at, row.expires_at,
                          bool(row.marks & DELIVERED), bool(row.marks & ACKED), read)


def _report_rows(deltas: Mapping[str, ReportDelta], now: float) -> list[tuple[Any, ...]]:
    """``reports`` rows (every column, in table order) adding ``deltas``."""
    return [(r, now, now, d.expires_at, d.addressed, d.stored, d.duplicates, d.delivered,
             d.acked, d.pushed, d.push_failed, d.read) for r, d in deltas.items()]


EXPIRY_GROUP = 1000  # reports per report_expiries row
#: the expiries within one report_expiries row span at most this much (the row is due at
#: its latest): a report is removed at most this long after its own expiry
EXPIRY_SPREAD_S = 60.0


def _expiry_rows(values: list[tuple[Any, ...]]) -> list[tuple[float, str, bytes]]:
    """``report_expiries`` rows listing the reports of ``values`` whose expiry was set
    (groups of up to EXPIRY_GROUP whose expiries lie within EXPIRY_SPREAD_S, each keyed
    by its latest expiry and first report)."""
    dated = sorted((v[3], v[0]) for v in values if v[3] > 0)
    out = []
    i = 0
    while i < len(dated):
        first = dated[i][0]
        end = i + 1
        while end < len(dated) and end - i < EXPIRY_GROUP and \
                dated[end][0] - first <= EXPIRY_SPREAD_S:
            end += 1
        part = dated[i:end]
        ids = [r for _, r in part]
        out.append((part[-1][0], min(ids), orjson.dumps(ids)))
        i = end
    return out


def _reason_rows(deltas: Mapping[str, ReportDelta]) -> list[tuple[str, str, int]]:
    return [(r, reason[:MAX_REASON_LEN], n) for r, d in deltas.items()
            for reason, n in d.reasons.items() if n]


def _add_ack(out: dict[str, ReportDelta], report: str, expires_at: float) -> None:
    d = out.get(report)
    if d is None:
        d = out[report] = ReportDelta()
    d.acked += 1
    d.expires_at = max(d.expires_at, expires_at)


_SET = ", ".join(f"{c} = {c} + excluded.{c}" for c in _COLUMNS)
SQLITE_UPSERT = (
    f"INSERT INTO reports (report, created_at, updated_at, expires_at, {', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (4 + len(_COLUMNS)))}) ON CONFLICT (report) DO UPDATE SET "
    f"created_at = min(created_at, excluded.created_at), updated_at = excluded.updated_at, "
    f"expires_at = max(expires_at, excluded.expires_at), "
    f"{_SET}")
SQLITE_ROW = "(" + ", ".join("?" * (4 + len(_COLUMNS))) + ")"
SQLITE_REASONS = ("INSERT INTO report_reasons (report, reason, n) VALUES (?, ?, ?) "
                  "ON CONFLICT (report, reason) DO UPDATE SET n = n + excluded.n")
SQLITE_EXPIRY = ("INSERT INTO report_expiries (expires_at, report, members) VALUES (?, ?, ?) "
                 "ON CONFLICT DO NOTHING")
SQLITE_DELIVERED = "UPDATE events SET marks = marks | 1 WHERE user_id = ? AND seq = ?"
SQLITE_UNDELIVERED = "UPDATE events SET marks = marks & ~1 WHERE user_id = ? AND seq = ?"
SQLITE_ACK_FIND = "SELECT report, marks, expires_at FROM events WHERE user_id = ? AND seq = ?"
SQLITE_ACK_SET = "UPDATE events SET marks = marks | 2 WHERE user_id = ? AND seq = ?"


def _sqlite_record(conn: sqlite3.Connection, values: list[tuple[Any, ...]],
                   reasons: list[tuple[str, str, int]],
                   delivered: Sequence[tuple[str, int, bool]],
                   acked: Sequence[tuple[str, int]], now: float) -> None:
    """:meth:`SqlReports.record_reports` on the one-hop thread's connection (inside its
    transaction)."""
    if delivered:
        conn.executemany(SQLITE_DELIVERED, [(u, s) for u, s, d in delivered if d])
        conn.executemany(SQLITE_UNDELIVERED, [(u, s) for u, s, d in delivered if not d])
    if acked:
        acks: dict[str, ReportDelta] = {}
        for user, seq in sorted(set(acked)):
            row = conn.execute(SQLITE_ACK_FIND, (user, seq)).fetchone()
            if row is None or row[1] & ACKED:
                continue
            conn.execute(SQLITE_ACK_SET, (user, seq))
            if row[0] is not None:
                _add_ack(acks, row[0], row[2])
        values = values + _report_rows(acks, now)
    if values:
        insert_many(conn, SQLITE_UPSERT, SQLITE_ROW, values, Dialect.max_params)
        conn.executemany(SQLITE_EXPIRY, _expiry_rows(values))
    if reasons:
        conn.executemany(SQLITE_REASONS, reasons)
