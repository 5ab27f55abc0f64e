"""The session directory contract: which live sessions each user has, on which hub.

Backends: ``memory.py`` (embedded mode, one process) and ``redis.py`` (cluster).
Both apply :func:`pushgate.router.directory.quota.sessions_to_kick` atomically with the insert.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from pushgate.router.directory.quota import SessionInfo


class DirectoryUnavailable(Exception):
    """The directory backend cannot be reached (retryable)."""


class Directory(Protocol):
    async def add(self, info: SessionInfo, limit: int) -> list[SessionInfo]:
        """Record ``info`` and, in the same atomic step, remove and return the user's
        oldest sessions that no longer fit in ``limit`` (the caller kicks them)."""
        ...

    async def remove(self, user: str, session_id: str, hub: str) -> bool:
        """Compare-and-delete: remove the session only if it is still recorded for
        ``hub``. Returns whether it was removed (False: unknown or already replaced)."""
        ...

    async def sessions(self, users: Iterable[str], *,
                       partial: bool = False) -> dict[str, list[SessionInfo]]:
        """Live sessions of each user (users without sessions are absent), oldest first.
        ``partial``: users whose sessions cannot be read now (a cluster node down) are
        left out instead of the call raising :class:`DirectoryUnavailable`."""
        ...

    async def remove_hub(self, hub: str) -> int:
        """Drop every session of ``hub`` (it died). Returns how many were dropped."""
        ...

    async def sync_hub(self, hub: str, sessions: Sequence[SessionInfo],
                       before: float) -> tuple[int, int]:
        """Hub re-sync: record ``sessions`` (no quota check: :meth:`enforce_quota`
        follows) and drop the hub's other sessions connected before ``before``. Returns
        (added, removed)."""
        ...

    async def enforce_quota(self, users: Iterable[str],
                            limit: int) -> list[tuple[SessionInfo, str]]:
        """After a re-sync (whose restores have no quota check): remove the oldest
        sessions of ``users`` beyond ``limit`` (the order of :meth:`add`) and return each
        with the id of its user's newest session (the kick's ``by``). A session admitted
        while the directory had lost the others (a failover's lost writes, a restart
        without data) must not leave its user over the quota until the next connect."""
        ...

    async def count(self) -> int:
        """Number of live sessions recorded."""
        ...

    async def close(self) -> None:
        """Release the backend. What was recorded stays where it lives: the memory
        directory (one process) forgets it; Redis keeps it for the other routers and
        for this router's next start (the hubs' re-sync repairs what changed)."""
        ...
