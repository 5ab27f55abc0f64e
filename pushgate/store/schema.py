"""Tables of the event store (SQLAlchemy Core). The database itself is created and
changed only by the Alembic migrations in ``migrations/``; ``tests/contract`` checks
that they agree with this module.

* ``inboxes``: one row per user that ever received an event, kept forever so that a
  seq is never reused. ``head_seq`` is the highest allocated seq, ``live`` the number of
  stored event rows, ``read_bitmap`` the portable roaring set of read seqs (a subset of
  the stored seqs, so ``unread = live - len(read_bitmap)``).
* ``events``: ``(user_id, seq)`` primary key; ``(user_id, msg_id)`` unique (NULLs are
  distinct) for idempotency, on SQLite only of the events that have an id (a partial
  index). ``expires_at`` is not indexed: the TTL cleanup finds expired events through
  ``expiries``.
* ``expiries``: the TTL cleanup's index, one row per group of up to 250 events stored in
  one append with the same ``expires_at``: ``members`` (orjson ``[[user, first_seq,
  last_seq], ...]`` runs of seqs), ``n`` events; primary key ``(expires_at, user_id,
  seq)`` (the first member's key, unique since every event is in one row), so the rows
  are kept in expiry order and no secondary index is needed.
* ``events.report``: the delivery report the event counts in (the send's ``id``, or
  one the router made); ``events.marks``: bits of what happened to it (1 delivered
  live, 2 acknowledged), written by the report flush (``reports.py``).
* ``reports``: one row per report id, the counters of a send summed over every
  process that flushed deltas into it; ``expires_at`` = the latest expiry of its
  events (cleaned with them). ``report_reasons``: push failures per reason.
  ``report_expiries``: the cleanup's index of reports, like ``expiries``: one row per
  flush (up to 1,000 reports) with the latest ``expires_at`` it set, primary key
  ``(expires_at, first report)``, ``members`` (orjson list of report ids).
* ``leases``: one row per lease name (e.g. ``cleanup``): who holds it until when.
* ``devices``: APNs/FCM tokens; ``(platform, token)`` primary key (a token belongs to
  one app install), ``(user_id, app)`` indexed for the offline bridge's lookups.
* ``push_outbox``: the offline bridge's queue, ``due_at`` indexed. A row is one push, or
  a group row of up to 100 pushes sharing the payload (``members``: orjson
  ``[[user, seq], ...]``; ``n``: pushes in the row, 1 for a single row); see
  ``outbox.py``. ``push_acks``: each user's highest acked seq.

Columns are ``user_id`` rather than ``user``: ``USER`` is reserved in SQL (PostgreSQL,
the standard) and a function name in MySQL, so raw SQL in operations stays unquoted.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    text,
)

from ._dialects import Blob, Key, Reason, Token

#: The newest migration this module mirrors (``migrations/versions/``): a database on an
#: older revision is refused at start (its columns may all exist: 0008 only changed a
#: collation); a newer one is accepted (a rolling upgrade: the new version migrated first)
REVISION = "0008"

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}

metadata = MetaData(naming_convention=NAMING)

inboxes = Table(
    "inboxes",
    metadata,
    Column("user_id", Key, primary_key=True),
    Column("head_seq", BigInteger, nullable=False),
    Column("live", BigInteger, nullable=False),
    Column("read_bitmap", Blob, nullable=False),
    Column("updated_at", Double, nullable=True),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)

events = Table(
    "events",
    metadata,
    Column("user_id", Key, primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("msg_id", Key, nullable=True),
    Column("body", Blob, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("report", Key, nullable=True),
    Column("marks", Integer, nullable=False, server_default="0"),
    # SQLite: only the events with an id (migration 0006); MySQL has no partial indexes
    Index("uq_events_user_id_msg_id", "user_id", "msg_id", unique=True,
          sqlite_where=text("msg_id IS NOT NULL")),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)

expiries = Table(
    "expiries",
    metadata,
    Column("expires_at", Double, primary_key=True),
    Column("user_id", Key, primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("n", Integer, nullable=False),
    Column("members", Blob, nullable=False),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)

leases = Table(
    "leases",
    metadata,
    Column("name", Key, primary_key=True),
    Column("holder", Key, nullable=False),
    Column("expires_at", Double, nullable=False),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)

devices = Table(
    "devices",
    metadata,
    Column("platform", String(8), primary_key=True),
    Column("token", Token, primary_key=True),
    Column("user_id", Key, nullable=False),
    Column("app", Key, nullable=False),
    Column("updated_at", Double, nullable=False),
    CheckConstraint("platform IN ('apns', 'fcm')", name="platform"),
    Index("ix_devices_user_id_app", "user_id", "app"),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)

push_outbox = Table(
    "push_outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("user_id", Key, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("platform", String(8), nullable=True),
    Column("token", Token, nullable=True),
    Column("payload", Blob, nullable=False),
    Column("due_at", Double, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("holder", Key, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("members", Blob, nullable=True),
    Column("n", Integer, nullable=False, server_default="1"),
    Index("ix_push_outbox_due_at", "due_at"),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)

push_acks = Table(
    "push_acks",
    metadata,
    Column("user_id", Key, primary_key=True),
    Column("acked_seq", BigInteger, nullable=False),
    Column("updated_at", Double, nullable=False),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)

reports = Table(
    "reports",
    metadata,
    Column("report", Key, primary_key=True),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("addressed", BigInteger, nullable=False, server_default="0"),
    Column("stored", BigInteger, nullable=False, server_default="0"),
    Column("duplicates", BigInteger, nullable=False, server_default="0"),
    Column("delivered", BigInteger, nullable=False, server_default="0"),
    Column("acked", BigInteger, nullable=False, server_default="0"),
    Column("pushed", BigInteger, nullable=False, server_default="0"),
    Column("push_failed", BigInteger, nullable=False, server_default="0"),
    Column("read_n", BigInteger, nullable=False, server_default="0"),
    Index("ix_reports_created_at", "created_at"),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)

report_expiries = Table(
    "report_expiries",
    metadata,
    Column("expires_at", Double, primary_key=True),
    Column("report", Key, primary_key=True),
    Column("members", Blob, nullable=False),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)

report_reasons = Table(
    "report_reasons",
    metadata,
    Column("report", Key, primary_key=True),
    Column("reason", Reason, primary_key=True),
    Column("n", BigInteger, nullable=False),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)
