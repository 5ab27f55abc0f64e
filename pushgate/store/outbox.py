"""The offline bridge's durable queue on SQL (:class:`~pushgate.store.base.PushOutbox`),
mixed into :class:`~pushgate.store.sql.SqlEventStore`.

Group rows: a campaign queues the same payload, due at the same time, for every device
of many users. :meth:`SqlOutbox.enqueue_pushes` packs such jobs (same ``payload``
bytes and ``due_at``, ``attempts == 0``, no ``platform``/``token``) into rows of up to
:data:`PUSH_GROUP` pushes: the payload is stored once, ``members`` holds the
orjson-encoded ``[[user, seq], ...]`` of the row's pushes in order and ``n`` their
number (``user_id``/``seq`` are the first member's). Every other job (a per-device
retry, a job alone with its payload) is a single row: ``members`` NULL, ``n = 1``. The
database then inserts, locks, updates and deletes one row per 100 pushes of a
campaign instead of one per push (its CPU per push is what limited the bridge).

A claim selects due rows (soonest first) and takes whole rows while their pushes fit
the limit, at least one row, so a claim may return up to ``PUSH_GROUP - 1`` pushes more
than asked; it moves their ``due_at`` to the end of the lease and records the holder,
in the transaction that selected them (``FOR UPDATE SKIP LOCKED`` on MySQL/MariaDB, so
concurrent workers skip each other's rows instead of waiting). Every push of a row
carries the row's ``id``; finishing the id finishes all of them. A worker that dies
leaves its rows to become due again when the lease ends (at-least-once, as before).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import orjson
from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ._dialects import Dialect, chunks
from .base import ClaimedBatch, ClaimedPush, Device, PushJob, check_device
from .schema import devices as devices_t
from .schema import push_acks as acks_t
from .schema import push_outbox as outbox_t

T = TypeVar("T")

PUSH_GROUP = 100
"""Most pushes stored in one ``push_outbox`` row (a group row)."""
CLAIM_FIRST_PAGE = 16  # due rows a claim reads (and locks) first


class SqlOutbox:
    """PushOutbox methods; relies on the store's transaction helpers."""

    _dialect: Dialect
    _clock: Callable[[], float]

    async def _write(self, body: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        raise NotImplementedError

    def _tx(self, *, write: bool) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    async def _devices_in(self, conn: AsyncConnection, users: list[str],
                          app: str | None = None) -> list[Device]:
        raise NotImplementedError

    async def enqueue_pushes(self, jobs: Sequence[PushJob]) -> None:
        """See :meth:`PushOutbox.enqueue_pushes`."""
        if not jobs:
            return
        rows = _grouped_rows(jobs, self._clock())

        async def body(conn: AsyncConnection) -> None:
            for part in chunks(rows, 1000):
                await conn.execute(insert(outbox_t), list(part))

        await self._write(body)

    async def claim_pushes(self, holder: str, limit: int, lease_s: float) -> list[ClaimedPush]:
        """See :meth:`PushOutbox.claim_pushes`."""
        if limit <= 0:
            return []
        now = self._clock()
        return await self._write(lambda conn: self._claim(conn, holder, limit, lease_s, now))

    async def claim_batch(self, holder: str, limit: int, lease_s: float) -> ClaimedBatch:
        """See :meth:`PushOutbox.claim_batch`."""
        if limit <= 0:
            return ClaimedBatch([], {}, [])
        now = self._clock()

        async def body(conn: AsyncConnection) -> ClaimedBatch:
            claimed = await self._claim(conn, holder, limit, lease_s, now)
            users = list(dict.fromkeys(c.job.user for c in claimed))
            if not users:
                return ClaimedBatch([], {}, [])
            return ClaimedBatch(claimed, await self._acked_in(conn, users),
                                await self._devices_in(conn, users))

        return await self._write(body)

    async def _claim(self, conn: AsyncConnection, holder: str, limit: int, lease_s: float,
                     now: float) -> list[ClaimedPush]:
        """Claim due rows, whole rows while their pushes fit ``limit`` (at least one).
        The due rows are read (and locked) a page at a time: first a few, as a campaign's
        rows hold 100 pushes each, then as many as could still fit."""
        c = outbox_t.c
        columns = select(c.id, c.n, c.due_at)
        taken: list[tuple[int, float]] = []  # (id, due_at) of the rows claimed, in order
        pushes = 0
        page = min(limit, CLAIM_FIRST_PAGE)
        after: tuple[float, int] | None = None
        while pushes < limit:
            cond = c.due_at <= now
            if after is not None:
                cond = and_(cond, or_(c.due_at > after[0],
                                      and_(c.due_at == after[0], c.id > after[1])))
            due = self._dialect.lock_skip(columns.where(cond).order_by(c.due_at, c.id)
                                          .limit(page))
            rows = (await conn.execute(due)).all()
            for row_id, n, due_at in rows:
                if taken and pushes + n > limit:
                    pushes = limit  # the next row does not fit: done
                    break
                taken.append((row_id, due_at))
                pushes += n
            if len(rows) < page:
                break  # no more due rows
            after = (rows[-1][2], rows[-1][0])
            page = limit - pushes  # at most that many rows can still fit
        if not taken:
            return []
        claim = (update(outbox_t).where(c.id.in_(bindparam("ids", expanding=True)))
                 .values(due_at=now + lease_s, holder=holder))
        read = select(c.id, c.user_id, c.seq, c.payload, c.members, c.platform, c.token,
                      c.attempts).where(c.id.in_(bindparam("ids", expanding=True)))
        ids = [row_id for row_id, _ in taken]
        found: dict[int, Any] = {}
        for part in chunks(ids, self._dialect.max_params):
            await conn.execute(claim, {"ids": list(part)})
            found.update((r.id, r) for r in await conn.execute(read, {"ids": list(part)}))
        claimed: list[ClaimedPush] = []
        for row_id, due_at in taken:
            r = found[row_id]
            if r.members is None:
                claimed.append(ClaimedPush(row_id, PushJob(
                    r.user_id, r.seq, r.payload, due_at, r.platform, r.token, r.attempts)))
                continue
            payload = r.payload  # one bytes object for every member of the row
            claimed += [ClaimedPush(row_id, PushJob(user, seq, payload, due_at))
                        for user, seq in orjson.loads(r.members)]
        return claimed

    async def renew_pushes(self, holder: str, ids: Sequence[int], lease_s: float) -> int:
        """See :meth:`PushOutbox.renew_pushes`."""
        c = outbox_t.c
        renew = (update(outbox_t).where(c.id.in_(bindparam("ids", expanding=True)),
                                        c.holder == holder)
                 .values(due_at=bindparam("due")))
        rows = sorted(set(ids))  # sorted: one lock order

        async def body(conn: AsyncConnection) -> int:
            due = self._clock() + lease_s
            renewed = 0
            for part in chunks(rows, self._dialect.max_params):
                result = await conn.execute(renew, {"ids": list(part), "due": due})
                renewed += result.rowcount
            return renewed

        return await self._write(body)

    async def finish_pushes(self, holder: str, done: Sequence[int], retries: Sequence[PushJob],
                            dead_tokens: Sequence[tuple[str, str]]) -> int:
        """See :meth:`PushOutbox.finish_pushes`."""
        for platform, token in dead_tokens:
            check_device("-", "-", platform, token)
        now = self._clock()
        ids = sorted(set(done))  # a group row's id comes once per member; sorted: lock order
        c = outbox_t.c
        held = self._dialect.lock(
            select(c.id, c.n).where(c.id.in_(bindparam("ids", expanding=True)),
                                    c.holder == holder),
            outbox_t,
        )
        remove = delete(outbox_t).where(c.id.in_(bindparam("ids", expanding=True)),
                                        c.holder == holder)
        d = devices_t.c
        forget = delete(devices_t).where(d.platform == bindparam("p"), d.token == bindparam("t"))

        async def body(conn: AsyncConnection) -> int:
            deleted = 0
            for part in chunks(ids, self._dialect.max_params):
                mine = (await conn.execute(held, {"ids": list(part)})).all()
                if mine:
                    await conn.execute(remove, {"ids": [r.id for r in mine]})
                    deleted += sum(r.n for r in mine)
            if retries:
                await conn.execute(insert(outbox_t), [_row(j, now) for j in retries])
            if dead_tokens:
                await conn.execute(forget, [{"p": p, "t": t} for p, t in dead_tokens])
            return deleted

        return await self._write(body)

    async def record_acks(self, acks: Mapping[str, int]) -> None:
        """See :meth:`PushOutbox.record_acks`."""
        if not acks:
            return
        now = self._clock()
        rows = [(u, s, now) for u, s in sorted(acks.items())]  # sorted: one lock order
        d = self._dialect
        await self._write(lambda conn: d.insert_rows(
            conn, "upsert_acks", lambda: d.upsert_acks(acks_t), rows))

    async def acked_seqs(self, users: Sequence[str]) -> dict[str, int]:
        """See :meth:`PushOutbox.acked_seqs`."""
        async with self._tx(write=False) as conn:
            return await self._acked_in(conn, list(dict.fromkeys(users)))

    async def _acked_in(self, conn: AsyncConnection, users: list[str]) -> dict[str, int]:
        c = acks_t.c
        stmt = select(c.user_id, c.acked_seq).where(c.user_id.in_(bindparam("u", expanding=True)))
        found: dict[str, int] = {}
        for part in chunks(users, self._dialect.max_params):
            found.update((r[0], r[1]) for r in await conn.execute(stmt, {"u": list(part)}))
        return found

    async def pending_pushes(self) -> int:
        """See :meth:`PushOutbox.pending_pushes`."""
        async with self._tx(write=False) as conn:
            total = await conn.scalar(select(func.sum(outbox_t.c.n)))
            return int(total or 0)


def _row(job: PushJob, now: float) -> dict[str, Any]:
    return {"user_id": job.user, "seq": job.seq, "platform": job.platform, "token": job.token,
            "payload": job.payload, "due_at": job.due_at, "attempts": job.attempts,
            "holder": None, "created_at": now, "members": None, "n": 1}


def _grouped_rows(jobs: Sequence[PushJob], now: float) -> list[dict[str, Any]]:
    """The ``push_outbox`` rows of ``jobs``: groupable jobs (see the module docstring)
    packed into rows of up to :data:`PUSH_GROUP` in job order, each row where its first
    member was; other jobs one row each."""
    rows: list[dict[str, Any]] = []
    groups: list[tuple[dict[str, Any], list[list[Any]]]] = []
    open_groups: dict[tuple[bytes, float], list[list[Any]]] = {}
    for job in jobs:
        if job.attempts or job.platform is not None or job.token is not None:
            rows.append(_row(job, now))
            continue
        key = (job.payload, job.due_at)
        members = open_groups.get(key)
        if members is None:
            row = _row(job, now)
            rows.append(row)
            members = open_groups[key] = [[job.user, job.seq]]
            groups.append((row, members))
        else:
            members.append([job.user, job.seq])
        if len(members) >= PUSH_GROUP:
            del open_groups[key]
    for row, members in groups:
        if len(members) > 1:  # a group of one stays a single row
            row["members"] = orjson.dumps(members)
            row["n"] = len(members)
    return rows
