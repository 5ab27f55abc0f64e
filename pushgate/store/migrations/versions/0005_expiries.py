"""The TTL cleanup finds expired events through ``expiries`` instead of an index on
``events.expires_at``.

* ``expiries``: one row per group of up to 250 events stored in one append with the
  same ``expires_at``; primary key ``(expires_at, user_id, seq)`` (the group's first
  event), ``n`` (events in the group), ``members`` (orjson ``[[user, first_seq,
  last_seq], ...]``). Rows are clustered in expiry order; the cleanup reads the expired
  ones and deletes their events by primary key.
* ``ix_events_expires_at`` is dropped: a secondary index entry per event, at the hot
  end of the index for every writer, was ~20 % of MariaDB's CPU per appended event
  (docs/storage.md, benchmark S8).

Upgrade backfills ``expiries`` from the stored events (in expiry order, a page at a
time) before dropping the index. Downgrade restores the index and drops the table.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from pushgate.store._dialects import binary_collation
from pushgate.store.expiry import expiry_rows

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PAGE = 10_000


def _is_mysql() -> bool:
    return op.get_bind().dialect.name in ("mysql", "mariadb")


def _key() -> sa.types.TypeEngine[str]:
    if _is_mysql():
        return mysql.VARCHAR(255, charset="utf8mb4", collation=binary_collation(op.get_bind().dialect))
    return sa.String(255)


def upgrade() -> None:
    expiries = op.create_table(
        "expiries",
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("user_id", _key(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("members", mysql.MEDIUMBLOB() if _is_mysql() else sa.LargeBinary(),
                  nullable=False),
        sa.PrimaryKeyConstraint("expires_at", "user_id", "seq", name="pk_expiries"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    _backfill(expiries)
    op.drop_index("ix_events_expires_at", table_name="events")


def _backfill(expiries: sa.Table) -> None:
    """One expiries row per run of events with the same ``expires_at`` (up to 250),
    reading the events in ``(expires_at, user_id, seq)`` order a page at a time."""
    bind = op.get_bind()
    events = sa.table("events", sa.column("user_id"), sa.column("seq"),
                      sa.column("expires_at"))
    after: tuple[float, str, int] | None = None
    while True:
        stmt = sa.select(events.c.user_id, events.c.seq, events.c.expires_at)
        if after is not None:
            e, u, s = after
            stmt = stmt.where(sa.or_(
                events.c.expires_at > e,
                sa.and_(events.c.expires_at == e, events.c.user_id > u),
                sa.and_(events.c.expires_at == e, events.c.user_id == u, events.c.seq > s)))
        rows = bind.execute(stmt.order_by(events.c.expires_at, events.c.user_id, events.c.seq)
                            .limit(PAGE)).all()
        if not rows:
            return
        # expiry_rows takes events rows (user, seq, id, body, created_at, expires_at)
        found = expiry_rows([(u, s, None, b"", 0.0, e) for u, s, e in rows])
        bind.execute(sa.insert(expiries), [
            {"expires_at": e, "user_id": u, "seq": s, "n": n, "members": m}
            for e, u, s, n, m in found])
        last = rows[-1]
        after = (last[2], last[0], last[1])


def downgrade() -> None:
    op.create_index("ix_events_expires_at", "events", ["expires_at"])
    op.drop_table("expiries")
