"""Delivery reports (issue 16): ``reports`` and ``report_reasons``; ``events.report``
(the report an event counts in) and ``events.marks`` (1 delivered live, 2 acknowledged).

``reports`` holds one row per report id with the counters every process flushed into
it (addressed, stored, duplicates, delivered, acked, pushed, push_failed, read_n) and
``expires_at`` (the latest expiry of its events: the TTL cleanup deletes it with
them); ``report_reasons`` the push failures by reason; ``report_expiries`` the
cleanup's index (one row per flush listing its reports, as ``expiries`` does for
events: an index on ``reports.expires_at`` cost ~1.2 µs per new report on SQLite). Adding the two ``events``
columns is an instant change on MariaDB ≥ 10.3 / MySQL 8 and SQLite; events stored
before have no report.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from pushgate.store._dialects import binary_collation

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _is_mysql() -> bool:
    return op.get_bind().dialect.name in ("mysql", "mariadb")


def _key() -> sa.types.TypeEngine[str]:
    if _is_mysql():
        return mysql.VARCHAR(255, charset="utf8mb4", collation=binary_collation(op.get_bind().dialect))
    return sa.String(255)


COUNTERS = ("addressed", "stored", "duplicates", "delivered", "acked", "pushed", "push_failed",
            "read_n")


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("report", _key(), nullable=True))
        batch.add_column(sa.Column("marks", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "reports",
        sa.Column("report", _key(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")
          for name in COUNTERS),
        sa.PrimaryKeyConstraint("report", name="pk_reports"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_reports_created_at", "reports", ["created_at"])
    op.create_table(
        "report_expiries",
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("report", _key(), nullable=False),
        sa.Column("members", mysql.MEDIUMBLOB() if _is_mysql() else sa.LargeBinary(),
                  nullable=False),
        sa.PrimaryKeyConstraint("expires_at", "report", name="pk_report_expiries"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "report_reasons",
        sa.Column("report", _key(), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("report", "reason", name="pk_report_reasons"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )


def downgrade() -> None:
    op.drop_table("report_reasons")
    op.drop_table("report_expiries")
    op.drop_index("ix_reports_created_at", table_name="reports")
    op.drop_table("reports")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("marks")
        batch.drop_column("report")
