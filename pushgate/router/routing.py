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
    # the exclusions as sets, one per combination of the dimensions they name (at most
    # 15): a session is checked with a lookup per combination, not against every entry
    # (a send with 20,000 entries to a workspace of 1,000 sessions held the hub's event
    # loop 12 s); an exclusion that names no dimension excludes nothing
    _excluded: tuple[tuple[tuple[int, ...], frozenset[tuple[str | None, ...]]], ...] = field(
        init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        index: dict[tuple[int, ...], set[tuple[str | None, ...]]] = {}
        for x in self.exclude:
            values = (x.workspace, x.account, x.device, x.application)
            named = tuple(i for i, v in enumerate(values) if v is not None)
            if named:
                index.setdefault(named, set()).add(tuple(values[i] for i in named))
        object.__setattr__(self, "_excluded",
                           tuple((named, frozenset(keys)) for named, keys in index.items()))

    def matches(self, s: SessionInfo) -> bool:
        if not self.target.matches(s):
            return False
        if self._excluded:
            have = (s.workspace, s.user, s.device, s.application)
            for named, keys in self._excluded:
                if tuple([have[i] for i in named]) in keys:
                    return False
        return True

    def key(self) -> tuple[object, ...]:
        return (self.target, self.exclude)


def select(sessions: Sequence[SessionInfo], flt: Filter, counter: int) -> list[SessionInfo]:
    """Sessions that receive a filter send. With ``find_any`` exactly one matching
    session is chosen, rotating with ``counter`` over the sessions in a stable order."""
    matched = [s for s in sessions if flt.matches(s)]
    if not flt.find_any or not matched:
        return matched
    matched.sort(key=lambda s: s.session_id)
    return [matched[counter % len(matched)]]
