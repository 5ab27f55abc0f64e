"""Leases (one TTL cleaner per cluster), device tokens, byte-exact keys on MySQL.

* ``leases``: ``name`` -> ``holder`` until ``expires_at``.
* ``devices``: APNs/FCM tokens, ``(platform, token)`` primary key, ``(user_id, app)``
  indexed; ``platform`` checked to be ``apns`` or ``fcm``.
* MySQL/MariaDB only: the key columns of 0001 (``utf8mb4_bin``, which ignores trailing
  spaces) move to a no-pad binary collation (MariaDB ``utf8mb4_nopad_bin``, MySQL 8
  ``utf8mb4_0900_bin``), so that ``"a"`` and ``"a "`` are distinct users and ids as on
  SQLite. This rebuilds ``events`` and ``inboxes``: instant on a new database, run it
  in a maintenance window on a large one.

Revision ID: 0002
Revises: 0001
Create Date: 2024-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from pushgate.store._dialects import binary_collation

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MYSQL = ("mysql", "mariadb")


def _is_mysql() -> bool:
    return op.get_bind().dialect.name in MYSQL


def _key(collation: str | None = None) -> sa.types.TypeEngine[str]:
    if _is_mysql():
        collation = collation or binary_collation(op.get_bind().dialect)
        return mysql.VARCHAR(255, charset="utf8mb4", collation=collation)
    return sa.String(255)


def _token() -> sa.types.TypeEngine[str]:
    if _is_mysql():
        return mysql.VARCHAR(512, charset="ascii", collation="ascii_bin")
    return sa.String(512)


def _collate_keys(collation: str) -> None:
    key = _key(collation)
    op.alter_column("inboxes", "user_id", type_=key, existing_nullable=False)
    op.alter_column("events", "user_id", type_=key, existing_nullable=False)
    op.alter_column("events", "msg_id", type_=key, existing_nullable=True)


def upgrade() -> None:
    if _is_mysql():
        _collate_keys(binary_collation(op.get_bind().dialect))
    op.create_table(
        "leases",
        sa.Column("name", _key(), nullable=False),
        sa.Column("holder", _key(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "devices",
        sa.Column("platform", sa.String(8), nullable=False),
        sa.Column("token", _token(), nullable=False),
        sa.Column("user_id", _key(), nullable=False),
        sa.Column("app", _key(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("platform", "token", name="pk_devices"),
        sa.CheckConstraint("platform IN ('apns', 'fcm')", name="ck_devices_platform"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_devices_user_id_app", "devices", ["user_id", "app"])


#: what utf8mb4_bin (PAD SPACE) would make one key again: (table, key columns)
_PAD_KEYS = (("inboxes", ("user_id",)), ("events", ("user_id", "seq")),
             ("events", ("user_id", "msg_id")))


def _refuse_colliding_keys() -> None:
    """Before any change (MySQL's DDL is not transactional: a collation change that
    failed half way left leases and devices dropped at revision 0002, which no upgrade
    repairs): refuse when keys differ only by trailing spaces."""
    for table, cols in _PAD_KEYS:
        grouped = ", ".join(f"{c} COLLATE utf8mb4_bin" if c != "seq" else c for c in cols)
        key = f"CONCAT_WS('|', {', '.join(cols)})" if len(cols) > 1 else cols[0]
        row = op.get_bind().execute(sa.text(
            f"SELECT MIN({key}), MAX({key}) FROM {table} "
            f"WHERE {' AND '.join(f'{c} IS NOT NULL' for c in cols)} "
            f"GROUP BY {grouped} HAVING COUNT(*) > 1 LIMIT 1")).first()
        if row is not None:
            raise RuntimeError(
                f"cannot downgrade 0002: {table} has keys ({', '.join(cols)}) that differ "
                f"only by trailing spaces, e.g. {row[0]!r} and {row[1]!r}; 0001's collation "
                f"would make them one (nothing was changed)")


def downgrade() -> None:
    if _is_mysql():
        _refuse_colliding_keys()
    op.drop_index("ix_devices_user_id_app", table_name="devices")
    op.drop_table("devices")
    op.drop_table("leases")
    if _is_mysql():
        _collate_keys("utf8mb4_bin")
