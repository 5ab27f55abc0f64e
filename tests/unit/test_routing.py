"""Filter matching and find_any selection."""

from __future__ import annotations

import pytest

from pushgate.router.directory.quota import SessionInfo
from pushgate.router.routing import ClientRef, Filter, select


def sess(sid: str, user: str = "alice", ws: str = "w1", dev: str = "phone",
         app: str = "chat") -> SessionInfo:
    return SessionInfo(session_id=sid, user=user, hub="h", connected_at=0.0, workspace=ws,
                       device=dev, application=app)


SESSIONS = [
    sess("1", "alice", "w1", "phone", "chat"),
    sess("2", "alice", "w1", "laptop", "chat"),
    sess("3", "alice", "w2", "phone", "mail"),
    sess("4", "bob", "w1", "phone", "chat"),
    sess("5", "bob", "w1", "tablet", "mail"),
]


def ids(sessions: list[SessionInfo]) -> list[str]:
    return sorted(x.session_id for x in sessions)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (ClientRef(), ["1", "2", "3", "4", "5"]),
        (ClientRef(workspace="w1"), ["1", "2", "4", "5"]),
        (ClientRef(account="alice"), ["1", "2", "3"]),
        (ClientRef(device="phone"), ["1", "3", "4"]),
        (ClientRef(application="mail"), ["3", "5"]),
        (ClientRef(workspace="w1", account="alice"), ["1", "2"]),
        (ClientRef("w1", "alice", "phone", "chat"), ["1"]),
        (ClientRef(account="carol"), []),
        (ClientRef(workspace="w2", application="chat"), []),
    ],
)
def test_omitted_dimensions_multicast(target: ClientRef, expected: list[str]) -> None:
    assert ids(select(SESSIONS, Filter(target), 0)) == expected


def test_empty_string_dimension_matches_only_empty_values() -> None:
    no_device = sess("9", dev="")
    assert ids(select([*SESSIONS, no_device], Filter(ClientRef(device="")), 0)) == ["9"]


def test_exclude_removes_matching_sessions() -> None:
    flt = Filter(ClientRef(workspace="w1"), exclude=(ClientRef(account="alice", device="phone"),))
    assert ids(select(SESSIONS, flt, 0)) == ["2", "4", "5"]


def test_several_excludes_all_apply() -> None:
    flt = Filter(ClientRef(), exclude=(ClientRef(account="bob"), ClientRef(application="mail")))
    assert ids(select(SESSIONS, flt, 0)) == ["1", "2"]


def test_an_exclude_entry_with_no_dimension_excludes_nobody() -> None:
    flt = Filter(ClientRef(account="alice"), exclude=(ClientRef(),))
    assert ids(select(SESSIONS, flt, 0)) == ["1", "2", "3"]


def test_exclude_of_the_whole_target_leaves_nobody() -> None:
    flt = Filter(ClientRef(account="bob"), exclude=(ClientRef(account="bob"),))
    assert select(SESSIONS, flt, 0) == []


def test_find_any_picks_exactly_one_matching_session() -> None:
    flt = Filter(ClientRef(account="alice"), find_any=True)
    chosen = select(SESSIONS, flt, 0)
    assert len(chosen) == 1
    assert chosen[0].user == "alice"


def test_find_any_rotates_over_matches_in_session_id_order() -> None:
    flt = Filter(ClientRef(account="alice"), find_any=True)
    picks = [select(SESSIONS, flt, c)[0].session_id for c in range(7)]
    assert picks == ["1", "2", "3", "1", "2", "3", "1"]


def test_find_any_choice_does_not_depend_on_input_order() -> None:
    flt = Filter(ClientRef(workspace="w1"), find_any=True)
    for c in range(5):
        assert select(SESSIONS, flt, c) == select(list(reversed(SESSIONS)), flt, c)


def test_find_any_never_picks_an_excluded_session() -> None:
    flt = Filter(ClientRef(account="alice"), find_any=True, exclude=(ClientRef(device="phone"),))
    assert {select(SESSIONS, flt, c)[0].session_id for c in range(4)} == {"2"}


def test_find_any_with_no_match_selects_nobody() -> None:
    flt = Filter(ClientRef(account="carol"), find_any=True)
    assert select(SESSIONS, flt, 3) == []


def test_select_does_not_reorder_the_callers_list() -> None:
    sessions = list(reversed(SESSIONS))
    before = list(sessions)
    select(sessions, Filter(ClientRef(), find_any=True), 1)
    assert sessions == before


def test_filter_key_identifies_the_audience_for_find_any_rotation() -> None:
    a = Filter(ClientRef(account="alice"), find_any=True)
    assert a.key() == Filter(ClientRef(account="alice"), find_any=True).key()
    assert a.key() != Filter(ClientRef(account="bob")).key()
    assert a.key() != Filter(ClientRef(account="alice"), exclude=(ClientRef(device="x"),)).key()
    hash(a.key())


def test_exclusions_match_as_each_entry_would_whatever_their_number() -> None:
    """The exclusions are looked up by the dimensions they name (a send with 20,000
    entries held a hub's loop 12 s checking each session against each): a session is
    excluded exactly when some entry naming a dimension matches it."""
    import random

    rng = random.Random(7)
    values = {"workspace": ["w1", "w2", ""], "account": ["alice", "bob", "carol"],
              "device": ["phone", "laptop", ""], "application": ["chat", "mail"]}

    def some(dim: str) -> str | None:
        return rng.choice([None, *values[dim]])

    sessions = [sess(str(i), rng.choice(values["account"]), rng.choice(values["workspace"]),
                     rng.choice(values["device"]), rng.choice(values["application"]))
                for i in range(200)]
    for _ in range(300):
        exclude = tuple(ClientRef(some("workspace"), some("account"), some("device"),
                                  some("application")) for _ in range(rng.randrange(6)))
        flt = Filter(ClientRef(workspace=some("workspace")), exclude=exclude)
        for s in sessions:
            by_entry = flt.target.matches(s) and not any(
                x != ClientRef() and x.matches(s) for x in exclude)
            assert flt.matches(s) is by_entry, (exclude, s)
