"""Session quota: which existing sessions a new session kicks."""

from __future__ import annotations

import pytest

from pushgate.router.directory.quota import SessionInfo, sessions_to_kick


def s(sid: str, at: float, user: str = "alice") -> SessionInfo:
    return SessionInfo(session_id=sid, user=user, hub="h1", connected_at=at)


def ids(sessions: list[SessionInfo]) -> list[str]:
    return [x.session_id for x in sessions]


def test_below_the_limit_nobody_is_kicked() -> None:
    existing = [s("a", 1), s("b", 2), s("c", 3), s("d", 4)]
    assert sessions_to_kick(existing, 5) == []


def test_first_session_is_never_kicked_with_limit_1() -> None:
    assert sessions_to_kick([], 1) == []


def test_sixth_session_kicks_the_oldest() -> None:
    existing = [s("e", 5), s("c", 3), s("a", 1), s("d", 4), s("b", 2)]
    assert ids(sessions_to_kick(existing, 5)) == ["a"]


def test_ties_in_age_are_broken_by_session_id() -> None:
    existing = [s("zz", 1), s("mm", 1), s("aa", 1), s("bb", 2), s("cc", 3)]
    assert ids(sessions_to_kick(existing, 5)) == ["aa"]
    assert ids(sessions_to_kick(existing, 3)) == ["aa", "mm", "zz"]


def test_limit_1_replaces_the_single_existing_session() -> None:
    assert ids(sessions_to_kick([s("old", 10)], 1)) == ["old"]


def test_over_the_limit_kicks_enough_oldest_to_fit_the_new_one() -> None:
    # the limit was lowered: 6 live sessions, limit 3 -> keep the 2 newest + the new one
    existing = [s(f"s{i}", float(i)) for i in range(6)]
    assert ids(sessions_to_kick(existing, 3)) == ["s0", "s1", "s2", "s3"]


def test_input_order_does_not_matter() -> None:
    existing = [s("a", 1), s("b", 2), s("c", 3)]
    assert sessions_to_kick(existing, 2) == sessions_to_kick(list(reversed(existing)), 2)


@pytest.mark.parametrize("limit", [0, -1])
def test_limit_below_1_is_refused(limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        sessions_to_kick([], limit)
