"""The sessions held by this hub process, and what routers ask of them.

:class:`Registry` carries out deliveries, kicks and broadcasts on the sessions held
here. In embedded mode the routing core calls it through :class:`LocalHubs`; in the
cluster the same calls arrive over the HubLink streams
(:class:`pushgate.hub.routers.RouterConn`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from pushgate.hub.session import Session
from pushgate.protocol import encode_kicked
from pushgate.router.base import Hubs
from pushgate.router.routing import Filter, select


class Registry:
    def __init__(self, hub_id: str) -> None:
        self.hub_id = hub_id
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def add(self, session: Session) -> None:
        self._sessions[session.id] = session

    def discard(self, session: Session) -> None:
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]

    # -- router -> hub ----------------------------------------------------------------

    def deliver(self, session_ids: Iterable[str], frame: str, seq: int, t0: float,
                again: bool = False) -> int:
        """Send ``frame`` to each listed session still held here; returns how many took
        it (``again``: see :meth:`Session.push`)."""
        n = 0
        for sid in session_ids:
            s = self._sessions.get(sid)
            if s is not None and s.push(frame, seq, t0, again):
                n += 1
        return n

    def kick(self, session_id: str, by: str | None) -> bool:
        s = self._sessions.get(session_id)
        if s is None:
            return False
        s.kick(encode_kicked("quota", by), "kicked: session quota reached by a newer session")
        return True

    def matching(self, flt: Filter) -> list[str]:
        """The ids of the sessions held here that match ``flt`` (its target and
        exclusions), sorted: what a :meth:`broadcast` with ``find_any`` rotates over."""
        return sorted(s.info.session_id for s in self._sessions.values() if flt.matches(s.info))

    def broadcast(self, flt: Filter, frame: str, counter: int, t0: float) -> int:
        """Queue ``frame`` on the sessions held here that match ``flt``."""
        if flt.find_any:
            chosen = select([s.info for s in self._sessions.values()], flt, counter)
            return self.deliver((c.session_id for c in chosen), frame, 0, t0)
        matches = flt.matches
        n = 0
        for s in list(self._sessions.values()):  # one pass: match and push
            if matches(s.info) and s.push(frame, 0, t0):
                n += 1
        return n


class LocalHubs(Hubs):
    """The routing core's :class:`~pushgate.router.base.Hubs` in embedded mode: the hub
    in this process."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def deliver(self, hub: str, session_ids: Sequence[str], frame: str, seq: int, t0: float,
                want_ack: bool = False) -> int:
        if hub != self.registry.hub_id:
            return 0
        return self.registry.deliver(session_ids, frame, seq, t0, want_ack)

    def kick(self, hub: str, session_id: str, by: str | None) -> None:
        if hub == self.registry.hub_id:
            self.registry.kick(session_id, by)

    async def broadcast(self, flt: Filter, frame: str, counter: int, t0: float) -> int:
        return self.registry.broadcast(flt, frame, counter, t0)
