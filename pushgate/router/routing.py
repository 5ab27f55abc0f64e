"""Routing decisions (pure): which sessions a filter matches, and ``find_any`` choice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pushgate.router.directory.quota import SessionInfo


@dataclass(frozen=True, slots=True)
class ClientRef:
    """A (possibly partial) client address; ``None`` fields match anything."""

    workspace: str | None = None
    account: str | None = None
    device: str | None = None
    application: str | None = None

    def matches(self, s: SessionInfo) -> bool:
        return (
            (self.workspace is None or self.workspace == s.workspace)
            and (self.account is None or self.account == s.user)
            and (self.device is None or self.device == s.device)
            and (self.application is None or self.application == s.application)
        )


@dataclass(frozen=True, slots=True)
class Filter:
    """Pushca-style filter: omitted dimensions multicast; ``find_any`` picks one session."""

    target: ClientRef
    find_any: bool = False
    exclude: tuple[ClientRef, ...] = field(default_factory=tuple)

    def matches(self, s: SessionInfo) -> bool:
        if not self.target.matches(s):
            return False
        # an exclusion only applies when it names at least one dimension
        return not any(_names_something(x) and x.matches(s) for x in self.exclude)

    def key(self) -> tuple[object, ...]:
        return (self.target, self.exclude)


def _names_something(ref: ClientRef) -> bool:
    return any(v is not None for v in (ref.workspace, ref.account, ref.device, ref.application))


def select(sessions: Sequence[SessionInfo], flt: Filter, counter: int) -> list[SessionInfo]:
    """Sessions that receive a filter send. With ``find_any`` exactly one matching
    session is chosen, rotating with ``counter`` over the sessions in a stable order."""
    matched = [s for s in sessions if flt.matches(s)]
    if not flt.find_any or not matched:
        return matched
    matched.sort(key=lambda s: s.session_id)
    return [matched[counter % len(matched)]]
