"""Initial schema: inboxes (per-user seq counter + read bitmap) and events.

Written out explicitly (not from the live metadata) so that later schema changes are
new revisions. Types: case-sensitive utf8mb4_bin keys and MEDIUMBLOB on MySQL/MariaDB.

Revision ID: 0001
Revises:
Create Date: 2024-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MYSQL = ("mysql", "mariadb")


def _key() -> sa.types.TypeEngine[str]:
    return sa.String(255).with_variant(
        mysql.VARCHAR(255, charset="utf8mb4", collation="utf8mb4_bin"), *MYSQL
    )


def _blob() -> sa.types.TypeEngine[bytes]:
    return sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), *MYSQL)


def upgrade() -> None:
    op.create_table(
        "inboxes",
        sa.Column("user_id", _key(), nullable=False),
        sa.Column("head_seq", sa.BigInteger(), nullable=False),
        sa.Column("live", sa.BigInteger(), nullable=False),
        sa.Column("read_bitmap", _blob(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", name="pk_inboxes"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "events",
        sa.Column("user_id", _key(), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("msg_id", _key(), nullable=True),
        sa.Column("body", _blob(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "seq", name="pk_events"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index("uq_events_user_id_msg_id", "events", ["user_id", "msg_id"], unique=True)
    op.create_index("ix_events_expires_at", "events", ["expires_at"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("inboxes")
