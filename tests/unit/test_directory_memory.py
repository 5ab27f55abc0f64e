"""MemoryDirectory: add-with-quota, compare-and-delete remove, remove_hub, counts."""

from __future__ import annotations

import asyncio

import pytest

from pushgate.router.directory.memory import MemoryDirectory
from pushgate.router.directory.quota import SessionInfo


def s(sid: str, at: float, user: str = "alice", hub: str = "h1") -> SessionInfo:
    return SessionInfo(session_id=sid, user=user, hub=hub, connected_at=at)


def ids(sessions: list[SessionInfo]) -> list[str]:
    return [x.session_id for x in sessions]


@pytest.fixture
def d() -> MemoryDirectory:
    return MemoryDirectory()


async def test_sessions_are_listed_oldest_first_and_unknown_users_are_absent(
    d: MemoryDirectory,
) -> None:
    await d.add(s("b", 2), 5)
    await d.add(s("a", 1), 5)
    await d.add(s("x", 3, user="bob"), 5)
    got = await d.sessions(["alice", "bob", "carol"])
    assert set(got) == {"alice", "bob"}
    assert ids(got["alice"]) == ["a", "b"]
    assert ids(got["bob"]) == ["x"]
    assert await d.count() == 3


async def test_sixth_session_kicks_the_oldest(d: MemoryDirectory) -> None:
    for i in range(5):
        assert await d.add(s(f"s{i}", float(i)), 5) == []
    kicked = await d.add(s("s5", 5.0), 5)
    assert ids(kicked) == ["s0"]
    assert ids((await d.sessions(["alice"]))["alice"]) == ["s1", "s2", "s3", "s4", "s5"]
    assert await d.count() == 5


async def test_quota_ties_are_broken_by_session_id(d: MemoryDirectory) -> None:
    await d.add(s("zz", 1.0), 2)
    await d.add(s("aa", 1.0), 2)
    assert ids(await d.add(s("new", 2.0), 2)) == ["aa"]


async def test_quota_is_per_user(d: MemoryDirectory) -> None:
    await d.add(s("a1", 1, user="alice"), 1)
    assert await d.add(s("b1", 2, user="bob"), 1) == []
    assert ids(await d.add(s("a2", 3, user="alice"), 1)) == ["a1"]
    assert await d.count() == 2


async def test_lower_limit_kicks_several_at_once(d: MemoryDirectory) -> None:
    for i in range(4):
        await d.add(s(f"s{i}", float(i)), 10)
    assert ids(await d.add(s("s4", 4.0), 2)) == ["s0", "s1", "s2"]
    assert await d.count() == 2


async def test_re_adding_the_same_session_replaces_it_without_kicking(d: MemoryDirectory) -> None:
    await d.add(s("a", 1), 2)
    await d.add(s("b", 2), 2)
    assert await d.add(s("b", 3, hub="h2"), 2) == []
    got = (await d.sessions(["alice"]))["alice"]
    assert [(x.session_id, x.hub) for x in got] == [("a", "h1"), ("b", "h2")]
    assert await d.count() == 2


async def test_concurrent_adds_never_exceed_the_quota(d: MemoryDirectory) -> None:
    results = await asyncio.gather(*(d.add(s(f"s{i:02}", float(i)), 3) for i in range(20)))
    kicked = [k for r in results for k in ids(r)]
    assert len(kicked) == 17
    assert len(set(kicked)) == 17
    assert len((await d.sessions(["alice"]))["alice"]) == 3
    assert await d.count() == 3


async def test_remove_deletes_the_session(d: MemoryDirectory) -> None:
    await d.add(s("a", 1), 5)
    await d.add(s("b", 2), 5)
    assert await d.remove("alice", "a", "h1") is True
    assert ids((await d.sessions(["alice"]))["alice"]) == ["b"]
    assert await d.count() == 1


async def test_removing_the_last_session_makes_the_user_absent(d: MemoryDirectory) -> None:
    await d.add(s("a", 1), 5)
    assert await d.remove("alice", "a", "h1") is True
    assert await d.sessions(["alice"]) == {}
    assert await d.count() == 0


async def test_remove_is_compare_and_delete_on_the_hub(d: MemoryDirectory) -> None:
    await d.add(s("a", 1, hub="h1"), 5)
    await d.add(s("a", 2, hub="h2"), 5)  # the session moved to h2
    assert await d.remove("alice", "a", "h1") is False  # stale remove from the old hub
    assert ids((await d.sessions(["alice"]))["alice"]) == ["a"]
    assert await d.count() == 1
    assert await d.remove("alice", "a", "h2") is True
    assert await d.count() == 0


@pytest.mark.parametrize(("user", "sid"), [("alice", "zzz"), ("carol", "a")])
async def test_removing_an_unknown_session_reports_false(
    d: MemoryDirectory, user: str, sid: str
) -> None:
    await d.add(s("a", 1), 5)
    assert await d.remove(user, sid, "h1") is False
    assert await d.count() == 1


async def test_removing_twice_reports_false_the_second_time(d: MemoryDirectory) -> None:
    await d.add(s("a", 1), 5)
    assert await d.remove("alice", "a", "h1") is True
    assert await d.remove("alice", "a", "h1") is False
    assert await d.count() == 0


async def test_kicked_session_cannot_be_removed_again(d: MemoryDirectory) -> None:
    await d.add(s("old", 1), 1)
    await d.add(s("new", 2), 1)
    assert await d.remove("alice", "old", "h1") is False
    assert await d.count() == 1


async def test_remove_hub_drops_only_that_hubs_sessions(d: MemoryDirectory) -> None:
    await d.add(s("a1", 1, user="alice", hub="h1"), 5)
    await d.add(s("a2", 2, user="alice", hub="h2"), 5)
    await d.add(s("b1", 3, user="bob", hub="h1"), 5)
    await d.add(s("c2", 4, user="carol", hub="h2"), 5)
    assert await d.remove_hub("h1") == 2
    got = await d.sessions(["alice", "bob", "carol"])
    assert {u: ids(v) for u, v in got.items()} == {"alice": ["a2"], "carol": ["c2"]}
    assert await d.count() == 2
    assert await d.remove_hub("h1") == 0
    assert await d.remove_hub("h2") == 2
    assert await d.count() == 0


async def test_quota_counts_only_live_sessions_after_remove_hub(d: MemoryDirectory) -> None:
    await d.add(s("a1", 1, hub="dead"), 2)
    await d.add(s("a2", 2, hub="dead"), 2)
    await d.remove_hub("dead")
    assert await d.add(s("a3", 3), 2) == []


async def test_close_forgets_everything(d: MemoryDirectory) -> None:
    await d.add(s("a", 1), 5)
    await d.close()
    assert await d.count() == 0
    assert await d.sessions(["alice"]) == {}


async def test_invalid_limit_is_refused_and_changes_nothing(d: MemoryDirectory) -> None:
    await d.add(s("a", 1), 5)
    with pytest.raises(ValueError):
        await d.add(s("b", 2), 0)
    assert ids((await d.sessions(["alice"]))["alice"]) == ["a"]
    assert await d.count() == 1
