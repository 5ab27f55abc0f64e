"""Typed values the client hands to the application (frames of docs/protocol.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class State(Enum):
    """Connection state. ``CONNECTED`` starts when the server's ``hello`` arrives."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"


@dataclass(frozen=True, slots=True)
class Event:
    """One event. ``seq`` is ``None`` for a transient event (not stored: it cannot be
    fetched, acked or marked read and is never replayed)."""

    seq: int | None
    id: str | None
    body: Any
    created_at: float

    @property
    def transient(self) -> bool:
        return self.seq is None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        seq = d.get("seq")
        return cls(seq=seq if isinstance(seq, int) else None, id=d.get("id"), body=d.get("body"),
                   created_at=float(d.get("created_at") or 0.0))


@dataclass(frozen=True, slots=True)
class Limits:
    max_frame_bytes: int = 65536
    inline_event_max_bytes: int = 4096
    fetch_max_limit: int = 1000
    max_body_bytes: int = 65536
    idle_timeout_s: float = 120.0
    ping_interval_s: float = 20.0
    max_sessions_per_user: int = 5
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Limits:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k != "extra" and k in d}
        extra = {k: v for k, v in d.items() if k not in known}
        return cls(**known, extra=extra)


@dataclass(frozen=True, slots=True)
class Hello:
    """The first frame of every connection."""

    session: str
    user: str
    head: int
    unread: int
    limits: Limits
    v: int = 1

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Hello:
        return cls(session=str(d.get("session", "")), user=str(d.get("user", "")),
                   head=int(d.get("head") or 0), unread=int(d.get("unread") or 0),
                   limits=Limits.from_dict(d.get("limits") or {}), v=int(d.get("v") or 1))


@dataclass(frozen=True, slots=True)
class FetchResult:
    events: list[Event]
    head: int
    more: bool


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Answer to ``read``: the user's head, unread count and stored (live) events."""

    head: int
    unread: int
    live: int


@dataclass(frozen=True, slots=True)
class ReadState:
    head: int
    unread: int
    live: int
    read: list[tuple[int, int]]  # read seqs as sorted inclusive ranges


@dataclass(frozen=True, slots=True)
class SendResult:
    """Answer to ``send``: per-user results (``user``, ``seq``, ``sessions``, ...), the
    total of live sessions reached and the send's delivery report id (``GET
    /v1/notifications/{report}`` on the server side)."""

    results: list[dict[str, Any]]
    sessions: int
    report: str | None = None


@dataclass(frozen=True, slots=True)
class CloseInfo:
    """Why the last connection ended. ``code`` 1006 = no close frame (network loss)."""

    code: int
    reason: str
    by_client: bool = False  # closed by this client (watchdog, token refresh, close())
