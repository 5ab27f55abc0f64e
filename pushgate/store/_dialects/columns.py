"""Column types whose SQL differs between SQLite and MySQL/MariaDB.

Keys are compared byte for byte on both: SQLite's default ``BINARY`` collation; on
MySQL/MariaDB a binary collation that does not ignore trailing spaces
(``utf8mb4_nopad_bin`` on MariaDB, ``utf8mb4_0900_bin`` on MySQL 8), so ``"a"`` and
``"a "`` are two users (two idempotency ids) on every backend.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import LargeBinary, String
from sqlalchemy.dialects import mysql
from sqlalchemy.engine.interfaces import Dialect as SADialect
from sqlalchemy.types import TypeDecorator, TypeEngine


def binary_collation(dialect: SADialect) -> str:
    """The utf8mb4 collation comparing keys byte for byte, trailing spaces included."""
    if getattr(dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    version = getattr(dialect, "server_version_info", None) or (0,)
    return "utf8mb4_0900_bin" if tuple(version) >= (8, 0, 17) else "utf8mb4_bin"


class KeyType(TypeDecorator[str]):
    """``VARCHAR(255)``: user ids, idempotency ids, apps, lease names (see module doc)."""

    impl = String(255)
    cache_ok = True

    def load_dialect_impl(self, dialect: SADialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(
                mysql.VARCHAR(255, charset="utf8mb4", collation=binary_collation(dialect))
            )
        return dialect.type_descriptor(String(255))


Key = KeyType()


class ReasonType(TypeDecorator[str]):
    """``VARCHAR(64)`` compared as keys are: push failure reasons (APNs' ``Unregistered``
    and FCM's ``UNREGISTERED`` are two)."""

    impl = String(64)
    cache_ok = True

    def load_dialect_impl(self, dialect: SADialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(
                mysql.VARCHAR(64, charset="utf8mb4", collation=binary_collation(dialect))
            )
        return dialect.type_descriptor(String(64))


Reason = ReasonType()
Blob = LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")
# Device tokens are printable ASCII (checked before any I/O): 1 byte per character.
Token = String(512).with_variant(
    mysql.VARCHAR(512, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
)
