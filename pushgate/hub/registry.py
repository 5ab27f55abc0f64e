"""The sessions held by this hub process, and the hub side of the router link.

In embedded mode the router core calls :class:`Registry` directly (it implements the
``HubLink`` calls: deliver, kick, broadcast); in the cluster the same calls arrive
over the gRPC HubLink stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator

from pushgate.errors import CloseCode
from pushgate.hub.protocol import encode_kicked
from pushgate.hub.session import Session
from pushgate.router.routing import Filter, select


class Registry:
    def __init__(self, hub_id: str) -> None:
        self.hub_id = hub_id
        self._sessions: dict[str, Session] = {}
        self.empty = asyncio.Event()  # set while no session is held (shutdown waits on it)
        self.empty.set()

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def add(self, session: Session) -> None:
        self._sessions[session.id] = session
        self.empty.clear()

    def discard(self, session: Session) -> None:
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]
            if not self._sessions:
                self.empty.set()

    # -- HubLink (router -> hub) ------------------------------------------------------

    def deliver(self, session_ids: Iterable[str], frame: str, seq: int, t0: float) -> int:
        """Queue ``frame`` on each listed session still held here; returns how many took it."""
        n = 0
        for sid in session_ids:
            s = self._sessions.get(sid)
            if s is not None and s.push(frame, seq, t0):
                n += 1
        return n

    def kick(self, session_id: str, by: str | None) -> bool:
        s = self._sessions.get(session_id)
        if s is None:
            return False
        s.push_final(encode_kicked("quota", by))
        s.close(CloseCode.KICKED, "kicked: session quota reached by a newer session")
        return True

    def broadcast(self, flt: Filter, frame: str, counter: int, t0: float) -> int:
        """Queue ``frame`` on the sessions held here that match ``flt``."""
        chosen = select([s.info for s in self._sessions.values()], flt, counter)
        return self.deliver((c.session_id for c in chosen), frame, 0, t0)
