"""The offline bridge's durable queue and per-user delivery acks.

* ``push_outbox``: one row per pending push, ``due_at`` indexed; workers claim due
  rows (``FOR UPDATE SKIP LOCKED`` on MySQL/MariaDB) by moving ``due_at`` to the end
  of their lease, and delete them when done.
* ``push_acks``: ``user_id`` -> highest acked seq.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from pushgate.store._dialects import binary_collation

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _is_mysql() -> bool:
    return op.get_bind().dialect.name in ("mysql", "mariadb")


def _key() -> sa.types.TypeEngine[str]:
    if _is_mysql():
        return mysql.VARCHAR(255, charset="utf8mb4", collation=binary_collation(op.get_bind().dialect))
    return sa.String(255)


def _token() -> sa.types.TypeEngine[str]:
    if _is_mysql():
        return mysql.VARCHAR(512, charset="ascii", collation="ascii_bin")
    return sa.String(512)


def upgrade() -> None:
    op.create_table(
        "push_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False,
                  autoincrement=True),
        sa.Column("user_id", _key(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("platform", sa.String(8), nullable=True),
        sa.Column("token", _token(), nullable=True),
        sa.Column("payload", mysql.MEDIUMBLOB() if _is_mysql() else sa.LargeBinary(),
                  nullable=False),
        sa.Column("due_at", sa.Double(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("holder", _key(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_push_outbox"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_push_outbox_due_at", "push_outbox", ["due_at"])
    op.create_table(
        "push_acks",
        sa.Column("user_id", _key(), nullable=False),
        sa.Column("acked_seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_push_acks"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )


def downgrade() -> None:
    op.drop_table("push_acks")
    op.drop_index("ix_push_outbox_due_at", table_name="push_outbox")
    op.drop_table("push_outbox")
