"""The offline bridge's durable queue on SQL (:class:`~pushgate.store.base.PushOutbox`),
mixed into :class:`~pushgate.store.sql.SqlEventStore`.

A claim moves the claimed rows' ``due_at`` to the end of the lease and records the
holder, in the transaction that selected them (``FOR UPDATE SKIP LOCKED`` on
MySQL/MariaDB, so concurrent workers skip each other's rows instead of waiting). A
worker that dies leaves its rows to become due again when the lease ends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ._dialect import Dialect, chunks
from .base import ClaimedPush, PushJob, check_device
from .schema import devices as devices_t
from .schema import push_acks as acks_t
from .schema import push_outbox as outbox_t

T = TypeVar("T")


class SqlOutbox:
    """PushOutbox methods; relies on the store's transaction helpers."""

    _dialect: Dialect
    _clock: Callable[[], float]

    async def _write(self, body: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        raise NotImplementedError

    def _tx(self, *, write: bool) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    async def enqueue_pushes(self, jobs: Sequence[PushJob]) -> None:
        """See :meth:`PushOutbox.enqueue_pushes`."""
        if not jobs:
            return
        now = self._clock()
        rows = [_row(j, now) for j in jobs]

        async def body(conn: AsyncConnection) -> None:
            for part in chunks(rows, 1000):
                await conn.execute(insert(outbox_t), list(part))

        await self._write(body)

    async def claim_pushes(self, holder: str, limit: int, lease_s: float) -> list[ClaimedPush]:
        """See :meth:`PushOutbox.claim_pushes`."""
        if limit <= 0:
            return []
        now = self._clock()
        c = outbox_t.c
        stmt = self._dialect.lock_skip(
            select(c.id, c.user_id, c.seq, c.payload, c.due_at, c.platform, c.token, c.attempts)
            .where(c.due_at <= now)
            .order_by(c.due_at)
            .limit(limit)
        )
        claim = (
            update(outbox_t)
            .where(c.id.in_(bindparam("ids", expanding=True)))
            .values(due_at=now + lease_s, holder=holder)
        )

        async def body(conn: AsyncConnection) -> list[ClaimedPush]:
            rows = (await conn.execute(stmt)).all()
            if rows:
                await conn.execute(claim, {"ids": [r.id for r in rows]})
            return [ClaimedPush(r.id, PushJob(r.user_id, r.seq, r.payload, r.due_at, r.platform,
                                              r.token, r.attempts)) for r in rows]

        return await self._write(body)

    async def finish_pushes(self, holder: str, done: Sequence[int], retries: Sequence[PushJob],
                            dead_tokens: Sequence[tuple[str, str]]) -> int:
        """See :meth:`PushOutbox.finish_pushes`."""
        for platform, token in dead_tokens:
            check_device("-", "-", platform, token)
        now = self._clock()
        c = outbox_t.c
        remove = delete(outbox_t).where(c.id.in_(bindparam("ids", expanding=True)),
                                        c.holder == holder)
        d = devices_t.c
        forget = delete(devices_t).where(d.platform == bindparam("p"), d.token == bindparam("t"))

        async def body(conn: AsyncConnection) -> int:
            deleted = 0
            for part in chunks(list(done), self._dialect.max_params):
                deleted += (await conn.execute(remove, {"ids": list(part)})).rowcount
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
        c = acks_t.c
        stmt = select(c.user_id, c.acked_seq).where(c.user_id.in_(bindparam("u", expanding=True)))
        found: dict[str, int] = {}
        async with self._tx(write=False) as conn:
            for part in chunks(list(dict.fromkeys(users)), self._dialect.max_params):
                found.update((r[0], r[1]) for r in await conn.execute(stmt, {"u": list(part)}))
        return found

    async def pending_pushes(self) -> int:
        """See :meth:`PushOutbox.pending_pushes`."""
        async with self._tx(write=False) as conn:
            return int(await conn.scalar(select(func.count()).select_from(outbox_t)) or 0)


def _row(job: PushJob, now: float) -> dict[str, Any]:
    return {"user_id": job.user, "seq": job.seq, "platform": job.platform, "token": job.token,
            "payload": job.payload, "due_at": job.due_at, "attempts": job.attempts,
            "holder": None, "created_at": now}
