"""The per-user session quota decision (pure).

A new session that takes a user over ``limit`` live sessions kicks the oldest ones.
The directory backends (memory, Redis Lua) apply this same rule atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A live session as the directory records it."""

    session_id: str
    user: str
    hub: str
    connected_at: float
    workspace: str = "default"
    device: str = ""
    application: str = ""


def age_key(s: SessionInfo) -> tuple[float, str]:
    return (s.connected_at, s.session_id)


def sessions_to_kick(existing: Sequence[SessionInfo], limit: int) -> list[SessionInfo]:
    """Which of ``existing`` (the user's other live sessions) must go so that one new
    session fits in ``limit``: the oldest first (ties broken by session id)."""
    if limit < 1:
        raise ValueError("limit must be >= 1")
    return oldest_beyond(existing, limit - 1)


def oldest_beyond(sessions: Sequence[SessionInfo], limit: int) -> list[SessionInfo]:
    """The sessions beyond the ``limit`` newest: the oldest first (ties broken by
    session id)."""
    excess = len(sessions) - limit
    if excess <= 0:
        return []
    return sorted(sessions, key=age_key)[:excess]
