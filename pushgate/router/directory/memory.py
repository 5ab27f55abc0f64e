"""In-process session directory (embedded mode). Every method is await-free inside,
so each call is atomic with respect to the event loop."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pushgate.router.directory.quota import (
    SessionInfo,
    age_key,
    oldest_beyond,
    sessions_to_kick,
)


class MemoryDirectory:
    def __init__(self) -> None:
        self._by_user: dict[str, dict[str, SessionInfo]] = {}
        self._count = 0

    async def add(self, info: SessionInfo, limit: int) -> list[SessionInfo]:
        current = self._by_user.setdefault(info.user, {})
        kicked = sessions_to_kick([s for s in current.values() if s.session_id != info.session_id],
                                  limit)
        for s in kicked:
            del current[s.session_id]
        self._count += (info.session_id not in current) - len(kicked)
        current[info.session_id] = info
        return kicked

    async def remove(self, user: str, session_id: str, hub: str) -> bool:
        current = self._by_user.get(user)
        if not current:
            return False
        info = current.get(session_id)
        if info is None or info.hub != hub:
            return False
        del current[session_id]
        self._count -= 1
        if not current:
            del self._by_user[user]
        return True

    def reaches(self, user: str, device: str | None) -> bool:
        """Whether ``user`` has a live session (of ``device``, when given) right now
        (synchronous: the routing core marks events delivered before storing them)."""
        current = self._by_user.get(user)
        if not current:
            return False
        return device is None or any(s.device == device for s in current.values())

    async def sessions(self, users: Iterable[str], *,
                       partial: bool = False) -> dict[str, list[SessionInfo]]:
        out: dict[str, list[SessionInfo]] = {}
        for u in users:
            current = self._by_user.get(u)
            if current:
                out[u] = sorted(current.values(), key=age_key)
        return out

    async def remove_hub(self, hub: str) -> int:
        dropped = 0
        for user in list(self._by_user):
            current = self._by_user[user]
            for sid in [sid for sid, s in current.items() if s.hub == hub]:
                del current[sid]
                dropped += 1
            if not current:
                del self._by_user[user]
        self._count -= dropped
        return dropped

    async def sync_hub(self, hub: str, sessions: Sequence[SessionInfo],
                       before: float) -> tuple[int, int]:
        held = {(s.user, s.session_id) for s in sessions}
        added = 0
        for s in sessions:
            current = self._by_user.setdefault(s.user, {})
            if s.session_id not in current:
                self._count += 1
                added += 1
            current[s.session_id] = s
        removed = 0
        for user in list(self._by_user):
            current = self._by_user[user]
            for sid, s in list(current.items()):
                if s.hub == hub and (user, sid) not in held and s.connected_at < before:
                    del current[sid]
                    removed += 1
            if not current:
                del self._by_user[user]
        self._count -= removed
        return added, removed

    async def enforce_quota(self, users: Iterable[str], limit: int) -> list[tuple[SessionInfo, str]]:
        out = []
        for user in dict.fromkeys(users):
            current = self._by_user.get(user, {})
            over = oldest_beyond(list(current.values()), limit)
            if over:
                newest = max(current.values(), key=age_key).session_id
            for s in over:
                del current[s.session_id]
                self._count -= 1
                out.append((s, newest))
        return out

    async def count(self) -> int:
        return self._count

    async def close(self) -> None:
        self._by_user.clear()
        self._count = 0
