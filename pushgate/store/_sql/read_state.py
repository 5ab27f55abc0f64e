"""Read state (mixed into :class:`~pushgate.store.sql.SqlEventStore`): ``read_state``,
coalesced on a server database (the calls of one event-loop iteration share one ``IN``
query), and
``mark_read``, which adds stored, unexpired seqs to the user's read bitmap under the
inbox row lock.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator, Sequence
from typing import Any

from pyroaring import BitMap
from sqlalchemy import bindparam, func, select, update
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

    async def count_reads(self, conn: AsyncConnection,
                          reads: Sequence[tuple[str, float]]) -> None:
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

    # not-yet-read seqs one transaction of ``mark_read`` takes up: a larger request is
    # marked in parts, each its own transaction, so that one client marking a long inbox
    # read does not hold the write lock, or the event loop (the rows it reads and the
    # reports it counts in), for long: 30,000 events each of its own report, SQLite, the
    # loop stalled up to 141 ms with parts of 10,000, 74 ms with 2,000 (1,000: 58 ms, and
    # 200,000 contiguous seqs took twice as long)
    MARK_READ_PART = 2_000

    async def mark_read(
        self, user: str, seqs: Sequence[int], ranges: Sequence[tuple[int, int]]
    ) -> ReadState:
        """See :meth:`EventStore.mark_read`. Seqs are clipped to ``[1, head]`` and kept only
        if stored and unexpired. ``ValueError`` on an inverted range; ``KeyError(user)``
        if no inbox. More than :attr:`MARK_READ_PART` seqs not read yet are marked in
        parts of that many, one transaction each (a concurrent ``read_state`` may see a
        part done before the rest; each part keeps the bitmap's invariant)."""
        now = self._clock()

        async def body(conn: AsyncConnection, todo: BitMap | None,
                       index: int) -> tuple[ReadState, BitMap, int]:
            """One part: from ``index`` of ``todo`` (built in the first transaction: it
            needs the head); returns where the next part starts (a transaction run again
            after a conflict starts over from its arguments)."""
            ib = inboxes_t.c
            stmt = select(ib.head_seq, ib.live, ib.read_bitmap).where(ib.user_id == user)
            row = (await conn.execute(self._dialect.lock(stmt, inboxes_t))).first()
            if row is None:
                raise KeyError(user)
            read = bitmap.deserialize(row.read_bitmap)
            ev = events_t.c
            if todo is None:
                # the request clipped to [oldest stored seq, head] (a range over the whole
                # history costs nothing for the seqs that the cleanup took), minus what
                # is read already
                first = await conn.scalar(select(func.min(ev.seq)).where(ev.user_id == user))
                todo = bitmap.build(seqs, ranges, lo=first or row.head_seq + 1,
                                    hi=row.head_seq, max_size=bitmap.MAX_SEQ + 1) - read
            if index or len(todo) > self.MARK_READ_PART:
                # more than one part: each starts at the next stored seq, so a run of
                # expired seqs inside the history is passed over in one index seek, not
                # walked part by part (marking [[1, head]] over two million expired seqs
                # took ~1,000 transactions, on every call)
                after = await conn.scalar(select(func.min(ev.seq)).where(
                    ev.user_id == user, ev.seq >= todo[index]))
                index = len(todo) if after is None else todo.rank(after - 1)
            part = todo[index:index + self.MARK_READ_PART] - read  # (a concurrent call
            index += self.MARK_READ_PART                          # may have marked some)
            found = await self._read_live(conn, user, part, now) if part else BitMap()
            blob = row.read_bitmap
            if found:
                read |= found
                blob = bitmap.serialize(read)
                await conn.execute(
                    update(inboxes_t)
                    .where(ib.user_id == user)
                    .values(read_bitmap=blob, updated_at=now)
                )
            return ReadState(
                head=row.head_seq, live=row.live, unread=row.live - len(read), read=blob
            ), todo, index

        state, todo, index = await self._write(functools.partial(body, todo=None, index=0))
        while index < len(todo):
            state, todo, index = await self._write(
                functools.partial(body, todo=todo, index=index))
        return state

    def _seq_clauses(self, wanted: BitMap) -> Iterator[Any]:
        """``WHERE`` clauses on ``events.seq`` that together select ``wanted`` and read
        at most about twice as many rows: one ``IN`` list when it fits the driver's
        parameters, one primary-key range when ``wanted`` fills at least half of its
        span, else the same for each slice of ``max_params`` seqs (scattered seqs over a
        long inbox are not scanned row by row)."""
        seq = events_t.c.seq
        per = self._dialect.max_params
        if len(wanted) <= per:
            yield seq.in_(list(wanted))
        elif wanted.max() - wanted.min() + 1 <= 2 * len(wanted):
            yield seq.between(wanted.min(), wanted.max())
        else:
            for start in range(0, len(wanted), per):
                part = wanted[start:start + per]
                if part.max() - part.min() + 1 <= 2 * len(part):
                    yield seq.between(part.min(), part.max())
                else:
                    yield seq.in_(list(part))

    async def _read_live(
        self, conn: AsyncConnection, user: str, wanted: BitMap, now: float
    ) -> BitMap:
        """Mark read: the stored, unexpired seqs of ``user`` among ``wanted``, and their
        reports' ``read`` counts raised by one per seq (one query for both, or a few:
        :meth:`_seq_clauses`)."""
        ev = events_t.c
        found = BitMap()
        reads: list[tuple[str, float]] = []
        for clause in self._seq_clauses(wanted):
            stmt = select(ev.seq, ev.report, ev.expires_at).where(
                ev.user_id == user, ev.expires_at > now, clause)
            for seq, report, expires_at in await conn.execute(stmt):
                if seq in wanted:
                    found.add(seq)
                    if report is not None:
                        reads.append((report, expires_at))
        if reads:
            await self.count_reads(conn, reads)
        return found
