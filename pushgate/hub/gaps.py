"""Gaps in a connection's seqs, filled from the store: :class:`GapFiller`.

A session holds a stored event that arrives past a gap (docs/protocol.md, order) for
``gap_hold_ms``: in a cluster the missing seqs are usually in flight from another
router. If they do not come, the session asks the hub's :class:`GapFiller`, which
fetches them through the routing core (``fetch``, as a client would) and hands them to
the session (:meth:`pushgate.hub.session.Session.fill`), which sends everything in seq
order. Fetches are batched per user: one in flight per user at a time, covering every
session of that user that asked meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from pushgate.errors import PushgateError
from pushgate.hub.session import Session, State
from pushgate.logs import get_logger
from pushgate.metrics import GatewayMetrics
from pushgate.models import MAX_SEQ
from pushgate.protocol import event_frame
from pushgate.router.base import RoutingCore

log = get_logger("pushgate.hub.gaps")

Spawn = Callable[[Coroutine[Any, Any, None]], None]

#: gap fetches in flight at once (one per user; a catch-up of the whole hub waits its turn)
MAX_FETCHES = 32


class GapFiller:
    """The hub's gap fetches (one per user in flight; see the module docstring)."""

    def __init__(self, router: RoutingCore, hold_ms: int, fetch_limit: int,
                 inline_max: int, metrics: GatewayMetrics, spawn: Spawn) -> None:
        self.router = router
        self._hold_s = hold_ms / 1000
        self.fetch_limit = fetch_limit  # seqs one fetch asks for at most
        self.inline_max = inline_max
        self.metrics = metrics
        self._spawn = spawn
        self._pending: dict[str, set[Session]] = {}  # user -> sessions waiting for a fetch
        # fetches in flight at once: a HubLink that comes back asks one per user of the hub
        self._fetches = asyncio.Semaphore(MAX_FETCHES)

    @property
    def hold_s(self) -> float:
        return self._hold_s

    def held(self) -> None:
        self.metrics.gaps_held.inc()

    def request(self, session: Session) -> None:
        user = session.identity.user
        pending = self._pending.get(user)
        if pending is not None:  # a fetch for this user is running: the next round takes it
            pending.add(session)
            return
        self._pending[user] = {session}
        self._spawn(self._run(user))

    async def _run(self, user: str) -> None:
        try:
            while sessions := self._pending.get(user):
                self._pending[user] = set()
                await self._fill(user, sessions)
        finally:
            self._pending.pop(user, None)

    async def _fill(self, user: str, sessions: set[Session]) -> None:
        gaps = [g for s in sessions if (g := s.gap()) is not None]
        if not gaps:
            return
        after = min(a for a, _ in gaps)
        last = max(b for _, b in gaps)
        if any(b == 0 for _, b in gaps):  # a catch-up: whatever the store holds after
            last = MAX_SEQ + 1
        limit = max(1, min(last - after - 1, self.fetch_limit))  # last is held
        self.metrics.gap_fetches.inc()
        try:
            async with self._fetches:
                events, _, _ = await self.router.fetch(user, after, limit)
        except PushgateError as e:  # the held frames go out; the client fetches the gap
            log.warning("gap fetch failed", user=user, error=e.message)
            self.metrics.error(e.code)
            events = []
        except Exception:  # the same: a session never waits for a fetch that failed
            log.exception("gap fetch failed", user=user)
            events = []
        frames = [(ev.seq, event_frame(ev.seq, ev.id, ev.body, ev.created_at, self.inline_max))
                  for ev in events if ev.seq < last]
        whole = None  # the same with every body inline, for sessions that need them
        for s in sessions:
            if s.state is State.OPEN:
                if s.whole_events and whole is None:
                    whole = [(ev.seq, event_frame(ev.seq, ev.id, ev.body, ev.created_at,
                                                  len(ev.body)))
                             for ev in events if ev.seq < last]
                passed = s.fill(whole if s.whole_events and whole is not None else frames)
                if passed:
                    self.metrics.gap_seqs_passed.inc(passed)
        self.metrics.gap_seqs_fetched.inc(len(frames))
