"""The EventStore contract: per-user inboxes with dense seqs, TTL and read state.

This module imports nothing from the rest of pushgate; every backend (SQLite in
embedded mode, MySQL/MariaDB in the cluster) implements :class:`EventStore` and
passes the same contract tests (``tests/contract/test_store_*.py``).

Invariants every backend keeps:

* ``seq`` is per user, starts at 1, strictly increasing, never reused (also after
  every event of the user expired and was cleaned up, and across restarts), and
  dense: an append of n events to a user takes the next n seqs.
* An event is durable (committed) before :meth:`EventStore.append` returns.
* ``(user, id)`` is unique while the event is stored: appending an event whose
  idempotency ``id`` the user already has returns the stored event's seq with
  ``duplicate=True`` and stores nothing.
* Read state is a bitmap of read seqs that only ever holds *live* (stored,
  unexpired-and-not-yet-cleaned) seqs; ``unread == live - len(read)``.

These hold with any number of processes writing the same database concurrently (on
MySQL/MariaDB: per-user counter rows locked in the same transaction as the insert;
on SQLite: one write transaction at a time). Besides :class:`EventStore`, a store
implements :class:`Leases` (cluster-wide leases, e.g. "one TTL cleaner at a time") and
:class:`DeviceStore` (APNs/FCM device tokens for the offline bridge) and
:class:`PushOutbox` (the offline bridge's durable queue and per-user delivery acks) and
:class:`ReportStore` (delivery reports: per-send counters and per-user status).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class StoreError(Exception):
    """Base of store failures. ``retryable`` says whether the same call may succeed later."""

    retryable = False


class StoreUnavailable(StoreError):
    """The database cannot be reached, timed out, or kept deadlocking. Retry later.

    Nothing was committed, with one exception: when the connection is lost while the
    database commits, the outcome is unknown (the commit may have happened). Writes are
    safe to retry anyway: an :meth:`EventStore.append` retried with the same
    idempotency ids returns the stored seqs (``duplicate=True``), and the other writes
    are idempotent.
    """

    retryable = True


class StoreOverloaded(StoreError):
    """Too many writes are already queued (group commit backlog); nothing was queued. Retry later."""

    retryable = True


MAX_KEY_LEN = 255  # users, idempotency ids, apps and lease names are VARCHAR(255)
CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1: refused in ids
MAX_TOKEN_LEN = 512  # device tokens: printable ASCII
PLATFORMS = ("apns", "fcm")


# The value types made per event or per push (NewEvent, Appended, Device, PushJob,
# ClaimedPush, the bridge's OfflinePush) are slotted dataclasses, hashable by value but
# not ``frozen``: a frozen dataclass's ``__init__`` sets each field through
# ``object.__setattr__`` (~0.7 µs per object here, ~0.15 µs without), and a send to
# 10,000 users or a bridge batch of 1,000 pushes makes several per user. They are
# never changed after they are made all the same.
@dataclass(slots=True, unsafe_hash=True)
class NewEvent:
    """An event to append. ``body`` is the JSON-encoded payload (bytes, already validated)."""

    user: str
    body: bytes
    ttl_s: int
    id: str | None = None
    report: str | None = None  # the delivery report it counts in (ReportStore)
    marks: int = 0  # DELIVERED when the sender already knows a live session will get it


def check_new_event(event: NewEvent) -> None:
    """Raise ``ValueError`` naming the bad field if ``event`` cannot be stored.

    Backends call it before opening a transaction, and the group committer calls it
    before queueing, so that one bad event fails only its own caller.
    """
    if not event.user or len(event.user) > MAX_KEY_LEN:
        raise ValueError(f"user must be 1..{MAX_KEY_LEN} characters, got {len(event.user)}")
    if event.id is not None and not 0 < len(event.id) <= MAX_KEY_LEN:
        raise ValueError(f"id must be 1..{MAX_KEY_LEN} characters or None, got {len(event.id)}")
    if not isinstance(event.body, bytes):
        raise ValueError(f"body must be bytes, got {type(event.body).__name__}")
    if event.ttl_s <= 0:
        raise ValueError(f"ttl_s must be > 0 (ttl 0 means transient: never stored), got {event.ttl_s}")


@dataclass(slots=True, unsafe_hash=True)  # not frozen: see the note above NewEvent
class Appended:
    """Result of appending one :class:`NewEvent` (same order as the input)."""

    user: str
    seq: int
    id: str | None
    created_at: float  # unix seconds
    duplicate: bool = False
    # when the stored event expires (a duplicate: the stored one's, which it leaves as is)
    expires_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Event:
    user: str
    seq: int
    id: str | None
    body: bytes
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class ReadState:
    """A user's read state. ``read`` is the portable roaring serialization of read seqs."""

    head: int
    live: int  # events currently stored for the user
    unread: int
    read: bytes = b""


class EventStore(Protocol):
    """Persistent per-user inboxes. All methods are coroutines and safe to call concurrently."""

    async def start(self) -> None:
        """Open the connection pool. Does not create or migrate the schema."""

    async def close(self) -> None:
        """Close the pool; pending calls fail with :class:`StoreUnavailable`."""

    async def append(self, events: Sequence[NewEvent]) -> list[Appended]:
        """Store ``events`` in one transaction and return one result per input, in order.

        Seqs are allocated per user in input order. Events whose ``(user, id)`` is
        already stored (or appears earlier in the same call) are not stored again: their
        result carries the existing seq and ``duplicate=True``. Atomic: either every
        event of the call is committed or none is (then :class:`StoreError` is raised).
        """
        ...

    async def fetch(self, user: str, after: int, limit: int) -> list[Event]:
        """Return up to ``limit`` live events of ``user`` with ``seq > after``, ascending."""
        ...

    async def head(self, user: str) -> int | None:
        """The user's highest allocated seq, 0 if the inbox exists but is empty of
        allocations, ``None`` when the user has no inbox at all (never received an event)."""
        ...

    async def heads(self, users: Sequence[str]) -> dict[str, int]:
        """Head seqs of many users at once; users without an inbox are absent."""
        ...

    async def mark_read(self, user: str, seqs: Sequence[int], ranges: Sequence[tuple[int, int]]) -> ReadState:
        """Mark ``seqs`` and the inclusive ``ranges`` as read: atomically when they hold
        at most 2,000 seqs not read yet, else in parts of that many (each atomic).

        Only live seqs are recorded (unknown, expired or future seqs are ignored), so
        that ``unread`` stays exact. Two concurrent calls for the same user both take
        effect (the bitmap is merged, never overwritten). Raises ``KeyError`` when the
        user has no inbox.
        """
        ...

    async def read_state(self, user: str) -> ReadState:
        """Head, live count, unread count and read bitmap. ``KeyError`` if no inbox."""
        ...

    async def cleanup_expired(self, now: float, batch: int) -> int:
        """Delete up to ``batch`` events with ``expires_at <= now`` in one short
        transaction, keeping ``live``, ``unread`` and the read bitmap exact. Returns
        the number deleted (0 when nothing is left). Safe to interrupt at any point."""
        ...

    async def cleanup_expired_reports(self, now: float, batch: int) -> int:
        """Delete about ``batch`` delivery reports whose events have all expired (their
        ``expires_at <= now``) in one short transaction; returns the number of rows
        deleted (0 when nothing is left). The TTL cleanup calls it once the events are
        done. Safe to interrupt at any point."""
        ...


@dataclass(slots=True, unsafe_hash=True)  # not frozen: see the note above NewEvent
class Device:
    """A push token of one application install. ``(platform, token)`` is unique: the
    same token registered again (for the same or another user) replaces the row."""

    user: str
    app: str
    platform: str  # one of PLATFORMS
    token: str
    updated_at: float  # unix seconds of the last registration


def check_device(user: str, app: str, platform: str, token: str) -> None:
    """Raise ``ValueError`` naming the bad field if the device cannot be stored."""
    for name, value in (("user", user), ("app", app)):
        if not value or len(value) > MAX_KEY_LEN:
            raise ValueError(f"{name} must be 1..{MAX_KEY_LEN} characters, got {len(value)}")
        if CONTROL_CHARS.search(value):
            raise ValueError(f"{name} contains control characters")
    if platform not in PLATFORMS:
        raise ValueError(f"platform must be one of {', '.join(PLATFORMS)}, got {platform!r}")
    if not 0 < len(token) <= MAX_TOKEN_LEN or not (token.isascii() and token.isprintable()):
        raise ValueError(f"token must be 1..{MAX_TOKEN_LEN} printable ASCII characters")


@runtime_checkable
class Leases(Protocol):
    """Named, expiring, cluster-wide leases (at most one holder per name at any time).

    Used to run one TTL cleaner per cluster. Time comes from the store's clock, so the
    hosts' clocks must agree to well within the lease TTL (NTP). A holder that dies
    keeps the lease until it expires; a holder that stops cleanly releases it.
    """

    async def acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take ``name`` for ``holder`` until now + ``ttl_s``, or renew it if ``holder``
        already has it. Atomic. ``True`` if ``holder`` now holds it; ``False`` if another
        holder has an unexpired lease. Raises :class:`StoreError`."""
        ...

    async def release_lease(self, name: str, holder: str) -> bool:
        """Give ``name`` up if ``holder`` holds it (others may take it at once). Returns
        whether it was held. Raises :class:`StoreError`."""
        ...


class DeviceStore(Protocol):
    """Device tokens for the offline bridge. All methods validate their arguments
    (``ValueError`` before any I/O) and raise :class:`StoreError` on database failures."""

    async def register_device(self, user: str, app: str, platform: str, token: str) -> Device:
        """Upsert: store the token for ``(user, app)`` with ``updated_at = now``. A token
        already known (same platform) moves to this user and app (the device changed
        account). Idempotent."""
        ...

    async def remove_device(self, user: str, app: str, platform: str, token: str) -> bool:
        """Remove the token if it belongs to ``(user, app)`` (logout). Returns whether a
        row was removed."""
        ...

    async def remove_dead_token(self, platform: str, token: str) -> bool:
        """Remove a token the provider rejected (APNs 410, FCM ``UNREGISTERED``),
        whoever it belongs to. Returns whether a row was removed."""
        ...

    async def devices(self, users: Sequence[str], app: str | None = None) -> list[Device]:
        """Tokens of ``users`` (of one ``app`` if given), ordered by user, app, platform,
        token. Users without devices contribute nothing."""
        ...


@dataclass(slots=True, unsafe_hash=True)  # not frozen: see the note above NewEvent
class PushJob:
    """A push to send: the event ``(user, seq)``, its encoded push request (``payload``,
    opaque to the store) and when it is due. ``platform``/``token`` set = only that device
    (a retry of one device); unset = every device of the user (chosen at send time)."""

    user: str
    seq: int
    payload: bytes
    due_at: float
    platform: str | None = None
    token: str | None = None
    attempts: int = 0


@dataclass(slots=True, unsafe_hash=True)  # not frozen: see the note above NewEvent
class ClaimedPush:
    """A job claimed by a worker (``id`` is the outbox row: shared by all the jobs of a
    group row)."""

    id: int
    job: PushJob


@dataclass(frozen=True, slots=True)
class ClaimedBatch:
    """What a bridge worker needs to send a batch: the claimed ``pushes``, the ``acked``
    seq of their users (users without acks absent) and those users' ``devices``."""

    pushes: list[ClaimedPush]
    acked: dict[str, int]
    devices: list[Device]


class PushOutbox(Protocol):
    """The offline bridge's durable queue. A job stays stored until a worker finishes it,
    so a crash loses none; a claimed job is invisible to other workers for ``lease_s``
    and becomes due again if its worker dies (at-least-once: a job whose worker died
    after the provider accepted it is sent again). All methods raise :class:`StoreError`.

    Jobs are stored in rows: a *group row* holds up to ``PUSH_GROUP`` (100) first-attempt
    jobs, each for every device of its user (no ``platform``/``token``), that share the
    payload and due time, as a campaign queues them; a single row holds one job. Rows are what is
    claimed, leased and finished: every job of a row carries the row's
    :attr:`ClaimedPush.id` and comes and goes with it. Counts (``limit``, the result of
    :meth:`finish_pushes`, :meth:`pending_pushes`) are jobs."""

    async def enqueue_pushes(self, jobs: Sequence[PushJob]) -> None:
        """Store ``jobs`` (one transaction). Durable when it returns. Jobs with equal
        ``payload`` bytes and ``due_at``, ``attempts == 0`` and no ``platform``/``token``
        are packed into group rows of up to ``PUSH_GROUP``, in order; others get a row
        each."""
        ...

    async def claim_pushes(self, holder: str, limit: int, lease_s: float) -> list[ClaimedPush]:
        """Claim due rows (``due_at <= now``, soonest first) for ``holder`` and return
        their jobs, one :class:`ClaimedPush` per job, a row's jobs in order and sharing
        one ``payload`` object. Whole rows while their jobs add up to at most ``limit``,
        and always at least the first row: a claim never splits a row, so it returns at
        most ``max(limit, PUSH_GROUP)`` jobs. Atomic; concurrent
        claimers (any process) never get the same row while its lease runs
        (MySQL/MariaDB: ``FOR UPDATE SKIP LOCKED``; SQLite: one writer)."""
        ...

    async def claim_batch(self, holder: str, limit: int, lease_s: float) -> ClaimedBatch:
        """:meth:`claim_pushes`, and in the same transaction the claimed users' acked
        seqs (:meth:`acked_seqs`) and devices (``devices``): one round of the bridge
        worker in one database transaction."""
        ...

    async def renew_pushes(self, holder: str, ids: Sequence[int], lease_s: float) -> int:
        """Extend the lease of the rows ``ids`` still claimed by ``holder`` to now +
        ``lease_s`` (a batch whose sending outlasts a lease is not claimed again while
        its worker lives). Returns how many rows were renewed."""
        ...

    async def finish_pushes(self, holder: str, done: Sequence[int], retries: Sequence[PushJob],
                            dead_tokens: Sequence[tuple[str, str]]) -> int:
        """In one transaction: delete the rows ``done`` (ids as claimed; repeats are
        ignored) still claimed by ``holder``, store the ``retries`` (one row each) and
        remove the ``dead_tokens`` ``(platform, token)`` from the devices. Returns how
        many jobs the deleted rows held (fewer than claimed when a lease expired and
        another worker took a row over)."""
        ...

    async def record_acks(self, acks: Mapping[str, int]) -> None:
        """Raise each user's highest acked seq to at least the given one (never lowers)."""
        ...

    async def acked_seqs(self, users: Sequence[str]) -> dict[str, int]:
        """Highest acked seq of each user; users without acks are absent."""
        ...

    async def pending_pushes(self) -> int:
        """Number of stored jobs, claimed or not (jobs, not rows)."""
        ...


REPORT_COUNTERS = ("addressed", "stored", "duplicates", "delivered", "acked", "pushed",
                   "push_failed", "read")
MAX_REASON_LEN = 64
DELIVERED, ACKED = 1, 2  # bits of an event's ``marks``


@dataclass(slots=True)
class ReportDelta:
    """Counter deltas of one report from one process since its last flush.
    ``expires_at``: the latest expiry of the report's events seen (0 = none)."""

    addressed: int = 0
    stored: int = 0
    duplicates: int = 0
    delivered: int = 0
    acked: int = 0
    pushed: int = 0
    push_failed: int = 0
    read: int = 0
    expires_at: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Report:
    """A delivery report: what happened to one send, summed over every process."""

    report: str
    created_at: float
    updated_at: float
    expires_at: float
    addressed: int
    stored: int
    duplicates: int
    delivered: int
    acked: int
    pushed: int
    push_failed: int
    read: int
    failed_by_reason: dict[str, int]


@dataclass(frozen=True, slots=True)
class ReportUser:
    """One user's status in a report, from the user's event row and read bitmap."""

    report: str
    user: str
    seq: int
    created_at: float
    expires_at: float
    delivered: bool
    acked: bool
    read: bool


class ReportStore(Protocol):
    """Delivery reports. Counting is batched: each process sums deltas in memory and
    writes them with :meth:`record_reports` (one transaction per flush, never one per
    delivery). All methods raise :class:`StoreError`."""

    async def record_reports(self, deltas: Mapping[str, ReportDelta],
                             delivered: Sequence[tuple[str, int, bool]],
                             acked: Sequence[tuple[str, int]],
                             sends: Sequence[tuple[str, int, int, int, int, float, float]] = (),
                             ) -> None:
        """In one transaction: add ``deltas`` and ``sends`` to their reports (a report
        row is created by its first delta; ``expires_at`` only grows; ``sends`` are the
        sends' own counts as ``(report, addressed, stored, duplicates, delivered,
        expires_at, sent_at)``, a report possibly more than once, each adding up; a
        report's ``created_at`` is its earliest ``sent_at``, or the time of its first
        delta); set (``True``) or clear the
        DELIVERED mark of the events ``(user, seq, delivered)`` (per-user status only:
        delivered *counts* come in ``deltas``); and set the ACKED mark of the events
        ``(user, seq)`` of ``acked``, each event that carries a report and did not have
        the mark adding 1 to that report's ``acked`` (so repeats, and the same ack
        flushed by several processes, count once). Events already cleaned up count
        nothing."""
        ...

    async def report(self, report: str) -> Report | None:
        """The report, ``None`` when unknown (never sent, or expired and cleaned)."""
        ...

    async def latest_reports(self, limit: int) -> list[Report]:
        """The ``limit`` most recently created reports, newest first."""
        ...

    async def report_user(self, report: str, user: str) -> ReportUser | None:
        """``user``'s status in ``report``: ``None`` when the user has no stored event
        of that report (not addressed, transient, or expired)."""
        ...
