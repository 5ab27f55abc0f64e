"""The router's side of the bridge: queue pushes durably at send time, record acks.

:class:`OfflineSink` is what :class:`~pushgate.router.core.Router` calls; :class:`Outbox`
implements it on a store's :class:`~pushgate.store.base.PushOutbox`. Acks are coalesced
in memory (per user, the highest seq) and written in one statement every
``flush_interval_s``: a busy gateway writes at most one row per acking user per interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from pushgate.logs import get_logger
from pushgate.router.bridge import policy
from pushgate.store.base import PushJob, PushOutbox, StoreError
from pushgate.tasks import cancel_and_wait

log = get_logger("pushgate.bridge")

REPORT_KEY = "_report"  # not a push field (parse_push refuses unknown fields)
#: when a push with a ``ttl`` stops being worth sending (unix s): a retry sends what is
#: left of its ttl, and none once it passed
EXPIRES_KEY = "_expires"


@dataclass(slots=True, unsafe_hash=True)  # not frozen: see the note above pushgate.store.base.NewEvent
class OfflinePush:
    """A stored event of ``user`` with a push block; ``online`` = a live session got it."""

    user: str
    seq: int
    online: bool


class OfflineSink(Protocol):
    async def enqueue(self, push: dict[str, Any], events: Sequence[OfflinePush],
                      report: str | None = None) -> set[str]:
        """Queue ``push`` for ``events`` as the policy says (durable when it returns);
        returns the users a push was queued for. ``report``: the send's delivery report,
        which the bridge's pushes count in. Raises :class:`StoreError`."""
        ...

    def on_ack(self, user: str, seq: int) -> None:
        """A client of ``user`` acked ``seq`` (synchronous, never raises)."""
        ...


class Outbox:
    def __init__(self, store: PushOutbox, ack_window_ms: int, *,
                 flush_interval_s: float = 0.25, clock: Callable[[], float] = time.time,
                 on_queued: Callable[[], None] | None = None) -> None:
        self.on_queued = on_queued  # e.g. wake an in-process worker
        self.store = store
        self.ack_window_ms = ack_window_ms
        self.flush_interval_s = flush_interval_s
        self.clock = clock
        self._acks: dict[str, int] = {}
        self._pending = asyncio.Event()  # acks wait: an idle gateway does not wake up
        self._task: asyncio.Task[None] | None = None

    async def enqueue(self, push: dict[str, Any], events: Sequence[OfflinePush],
                      report: str | None = None) -> set[str]:
        now = self.clock()
        # the report travels in the payload (one per send, shared by a campaign's group
        # rows): the worker counts each push without a lookup
        extra: dict[str, Any] = {}
        if report is not None:
            extra[REPORT_KEY] = report
        if push.get("ttl"):  # counted from the send, not from each attempt
            extra[EXPIRES_KEY] = now + push["ttl"]
        payload = orjson.dumps({**push, **extra} if extra else push)
        jobs = []
        for e in events:
            due = policy.due_at(now, e.online, self.ack_window_ms)
            if due is not None:
                jobs.append(PushJob(e.user, e.seq, payload, due))
        await self.store.enqueue_pushes(jobs)
        if jobs and self.on_queued is not None:
            self.on_queued()
        return {j.user for j in jobs}

    def on_ack(self, user: str, seq: int) -> None:
        if seq > self._acks.get(user, 0):
            self._acks[user] = seq
            self._pending.set()

    async def flush(self) -> None:
        acks, self._acks = self._acks, {}
        if not acks:
            return
        try:
            await self.store.record_acks(acks)
        except StoreError as e:  # keep them for the next round
            for user, seq in acks.items():
                self.on_ack(user, seq)
            log.warning("recording acks failed; will retry", error=str(e))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._pending.wait()
            await asyncio.sleep(self.flush_interval_s)  # gather a window's acks
            self._pending.clear()
            await self.flush()

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self.flush()
