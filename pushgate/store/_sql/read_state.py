"""Read state (mixed into :class:`~pushgate.store.sql.SqlEventStore`): ``read_state``,
coalesced on a server database (the calls of one event-loop iteration share one ``IN``
query), and
``mark_read``, which adds stored, unexpired seqs to the user's read bitmap under the
inbox row lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pyroaring import BitMap
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import bitmap
from .._dialects import chunks
from ..base import ReadState, StoreUnavailable
from ..schema import events as events_t
from ..schema import inboxes as inboxes_t
from .tx import SqlTransactions, _sqlite_errors


class SqlReadState(SqlTransactions):
    """``read_state`` and ``mark_read`` (which counts new reads in their delivery
    reports: ``count_reads`` of :class:`~pushgate.store._sql.reports.SqlReports`)."""

    async def count_reads(self, conn: AsyncConnection, user: str, found: BitMap) -> None:
        raise NotImplementedError

    _state_waiters: dict[str, list[asyncio.Future[ReadState | None]]]
    _state_flush_scheduled: bool
    _state_tasks: set[asyncio.Task[None]]

    async def read_state(self, user: str) -> ReadState:
        """See :meth:`EventStore.read_state`. Concurrent calls (a reconnect storm: every
        new session reads its user's state for ``hello``) are coalesced: the calls made
        in one event-loop iteration share one ``IN`` query, which starts after all of
        them were made (so each sees every commit that preceded its call). On a SQLite
        file there is nothing to coalesce: a read runs on the event loop's own connection
        at once (a WAL reader never waits for a writer) and costs less than the
        coalescing's future and task."""
        if self._reader is not None:
            state = (await self._read_states([user])).get(user)
            if state is None:
                raise KeyError(user)
            return state
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[ReadState | None] = loop.create_future()
        self._state_waiters.setdefault(user, []).append(fut)
        if not self._state_flush_scheduled:
            self._state_flush_scheduled = True
            loop.call_soon(self._start_state_flush)
        state = await fut
        if state is None:
            raise KeyError(user)
        return state

    def _start_state_flush(self) -> None:
        self._state_flush_scheduled = False
        waiters, self._state_waiters = self._state_waiters, {}
        task = asyncio.get_running_loop().create_task(self._flush_states(waiters))
        self._state_tasks.add(task)
        task.add_done_callback(self._state_tasks.discard)

    async def _flush_states(self, waiters: dict[str, list[asyncio.Future[ReadState | None]]]) -> None:
        try:
            states = await self._read_states(list(waiters))
        except BaseException as exc:
            for futs in waiters.values():
                for f in futs:
                    if not f.done():
                        f.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for user, futs in waiters.items():
            for f in futs:
                if not f.done():
                    f.set_result(states.get(user))

    async def _read_states(self, users: list[str]) -> dict[str, ReadState]:
        ib = inboxes_t.c
        out: dict[str, ReadState] = {}
        reader = self._reader
        if reader is not None:  # SQLite file: one thread hop, no SQLAlchemy transaction
            if self._engine is None:
                raise StoreUnavailable("event store is not started or already closed")
            with _sqlite_errors():
                found = await reader.read_states(users)
            for user, head, live, raw in found:
                n_read = len(bitmap.deserialize(raw)) if raw else 0
                out[user] = ReadState(head=head, live=live, unread=live - n_read, read=raw)
            return out
        async with self._tx(write=False) as conn:
            if len(users) == 1:
                stmt = select(ib.user_id, ib.head_seq, ib.live, ib.read_bitmap).where(
                    ib.user_id == users[0])
                rows = list(await conn.execute(stmt))
            else:
                stmt = select(ib.user_id, ib.head_seq, ib.live, ib.read_bitmap).where(
                    ib.user_id.in_(bindparam("users", expanding=True)))
                rows = []
                for part in chunks(users, self._dialect.max_params):
                    rows.extend(await conn.execute(stmt, {"users": list(part)}))
        for user, head, live, raw in rows:
            n_read = len(bitmap.deserialize(raw)) if raw else 0
            out[user] = ReadState(head=head, live=live, unread=live - n_read, read=raw)
        return out

    async def mark_read(
        self, user: str, seqs: Sequence[int], ranges: Sequence[tuple[int, int]]
    ) -> ReadState:
        """See :meth:`EventStore.mark_read`. Seqs are clipped to ``[1, head]`` and kept only
        if stored and unexpired. ``ValueError`` on an inverted range or more than
        ``bitmap.DEFAULT_MAX_SIZE`` seqs after clipping; ``KeyError(user)`` if no inbox."""
        now = self._clock()

        async def body(conn: AsyncConnection) -> ReadState:
            ib = inboxes_t.c
            stmt = select(ib.head_seq, ib.live, ib.read_bitmap).where(ib.user_id == user)
            row = (await conn.execute(self._dialect.lock(stmt, inboxes_t))).first()
            if row is None:
                raise KeyError(user)
            read = bitmap.deserialize(row.read_bitmap)
            wanted = bitmap.build(seqs, ranges, hi=row.head_seq) - read
            found = wanted & await self._live_seqs(conn, user, wanted, now) if wanted else BitMap()
            blob = row.read_bitmap
            if found:
                read |= found
                blob = bitmap.serialize(read)
                await self.count_reads(conn, user, found)
                await conn.execute(
                    update(inboxes_t)
                    .where(ib.user_id == user)
                    .values(read_bitmap=blob, updated_at=now)
                )
            return ReadState(
                head=row.head_seq, live=row.live, unread=row.live - len(read), read=blob
            )

        return await self._write(body)

    async def _live_seqs(
        self, conn: AsyncConnection, user: str, wanted: BitMap, now: float
    ) -> BitMap:
        """Stored, unexpired seqs of ``user`` among ``wanted``: an ``IN`` list when small,
        else one primary-key range scan over ``[min, max]``."""
        ev = events_t.c
        stmt = select(ev.seq).where(ev.user_id == user, ev.expires_at > now)
        if len(wanted) <= self._dialect.max_params:
            stmt = stmt.where(ev.seq.in_(list(wanted)))
        else:
            stmt = stmt.where(ev.seq.between(wanted.min(), wanted.max()))
        return BitMap(await conn.scalars(stmt))
