"""Group rows in the push outbox: one row for up to 100 pushes of a campaign.

* ``push_outbox.members`` (``MEDIUMBLOB`` on MySQL/MariaDB, ``BLOB`` on SQLite,
  nullable): on a group row the orjson-encoded ``[[user, seq], ...]`` of its pushes in
  order (all share the row's ``payload`` and ``due_at``; ``user_id``/``seq`` are the
  first member's); NULL on a single row.
* ``push_outbox.n`` (integer, NOT NULL, default 1): the number of pushes in the row.

Existing rows become single rows (``members`` NULL, ``n = 1``), so a queue survives
the upgrade. A bridge worker older than this revision would take a group row for one
push to its first member: upgrade (or stop) the bridge workers before gateways that
queue group rows. Downgrading drops the columns: run it with an empty outbox (a group
row would become a push to its first member only).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _is_mysql() -> bool:
    return op.get_bind().dialect.name in ("mysql", "mariadb")


def upgrade() -> None:
    op.add_column("push_outbox", sa.Column(
        "members", mysql.MEDIUMBLOB() if _is_mysql() else sa.LargeBinary(), nullable=True))
    op.add_column("push_outbox", sa.Column(
        "n", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("push_outbox") as batch:
        batch.drop_column("n")
        batch.drop_column("members")
