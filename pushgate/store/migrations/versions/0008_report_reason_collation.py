"""MySQL/MariaDB: ``report_reasons.reason`` compared byte for byte.

The column had the table's default collation (``utf8mb4_general_ci``): case-insensitive,
so APNs' ``Unregistered`` and FCM's ``UNREGISTERED`` were one primary-key value and a
report's ``failed_by_reason`` added them up under whichever came first. Now the binary
collation of the key columns (``utf8mb4_nopad_bin`` on MariaDB, ``utf8mb4_0900_bin`` on
MySQL 8), as SQLite always compared them. Rows merged before stay merged. SQLite:
nothing changes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from pushgate.store._dialects import binary_collation

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _is_mysql() -> bool:
    return op.get_bind().dialect.name in ("mysql", "mariadb")


def upgrade() -> None:
    if not _is_mysql():
        return
    collation = binary_collation(op.get_bind().dialect)
    op.alter_column("report_reasons", "reason", existing_nullable=False,
                    existing_type=sa.String(64),
                    type_=mysql.VARCHAR(64, charset="utf8mb4", collation=collation))


def downgrade() -> None:
    if not _is_mysql():
        return
    # refused before the change when a report holds two spellings of one reason (the
    # case-insensitive key would merge them): a duplicate-key error half way otherwise
    row = op.get_bind().execute(sa.text(
        "SELECT report, MIN(reason), MAX(reason) FROM report_reasons "
        "GROUP BY report, reason COLLATE utf8mb4_general_ci HAVING COUNT(*) > 1 LIMIT 1"
    )).first()
    if row is not None:
        raise RuntimeError(
            f"cannot downgrade 0008: report {row[0]!r} has the reasons {row[1]!r} and "
            f"{row[2]!r}, which 0007's collation would make one (delete one of the rows "
            f"first; nothing was changed)")
    op.alter_column("report_reasons", "reason", existing_nullable=False,
                    existing_type=sa.String(64),
                    type_=mysql.VARCHAR(64, charset="utf8mb4", collation="utf8mb4_general_ci"))
