"""The session directory contract, on every backend: memory (embedded) and Redis (cluster
mode) on each engine: one Redis, a Sentinel-managed primary, Redis Cluster.

All apply the same quota rule atomically with the insert, compare-and-delete on
removal, hub removal and hub re-sync. Every case runs on both; the few that differ on
purpose (what close() leaves behind) and Redis' own liveness keys are at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.exceptions import RedisError

from pushgate.router.directory import Directory, DirectoryUnavailable, open_directory
from pushgate.router.directory.keys import bucket
from pushgate.router.directory.memory import MemoryDirectory
from pushgate.router.directory.quota import SessionInfo
from pushgate.router.directory.redis import RedisDirectory
from tests import redis_service
from tests.support.ports import refused_port
from tests.support.waiting import wait_for


def s(sid: str, at: float, user: str = "alice", hub: str = "h1", **kw: str) -> SessionInfo:
    return SessionInfo(session_id=sid, user=user, hub=hub, connected_at=at, **kw)


def ids(sessions: list[SessionInfo]) -> list[str]:
    return [x.session_id for x in sessions]


ENGINES = {"redis": "redis_server", "sentinel": "redis_sentinel_url",
           "cluster": "redis_cluster_url"}


@pytest.fixture(params=["memory", *ENGINES])
async def d(request: pytest.FixtureRequest) -> AsyncIterator[Directory]:
    if request.param == "memory":
        directory = open_directory("memory://")
        yield directory
        await directory.close()
        return
    url = request.getfixturevalue(ENGINES[request.param])
    directory = open_directory(url, redis_service.new_prefix())
    yield directory
    await delete_keys(directory)
    await directory.close()


@pytest.fixture(params=list(ENGINES))
def engine_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(ENGINES[request.param])
    return url


async def delete_keys(directory: Directory) -> None:
    """Remove every key of the directory's prefix (on each master of a cluster)."""
    assert isinstance(directory, RedisDirectory)
    r = directory.redis  # a cluster client scans every master
    keys = [k async for k in r.scan_iter(match=f"{directory.prefix}*", count=1000)]
    for k in keys:
        await r.delete(k)
    assert [k async for k in r.scan_iter(match=f"{directory.prefix}*")] == []


async def test_sessions_round_trip_every_field_oldest_first(d: Directory) -> None:
    full = s("b", 1700000000.123456, workspace="w1", device="phone", application="chat")
    await d.add(full, 5)
    await d.add(s("a", 1.5), 5)
    await d.add(s("x", 3, user="bob", hub="h2"), 5)
    got = await d.sessions(["alice", "bob", "carol"])
    assert set(got) == {"alice", "bob"}
    assert got["alice"] == [s("a", 1.5), full]
    assert got["bob"] == [s("x", 3, user="bob", hub="h2")]
    assert await d.count() == 3


async def test_sixth_session_kicks_the_oldest_across_hubs(d: Directory) -> None:
    for i in range(5):
        assert await d.add(s(f"s{i}", float(i), hub=f"h{i % 2}"), 5) == []
    kicked = await d.add(s("s5", 5.0, hub="h9"), 5)
    assert kicked == [s("s0", 0.0, hub="h0")]
    assert ids((await d.sessions(["alice"]))["alice"]) == ["s1", "s2", "s3", "s4", "s5"]
    assert await d.count() == 5


async def test_quota_ties_are_broken_by_session_id(d: Directory) -> None:
    await d.add(s("zz", 1.0), 2)
    await d.add(s("aa", 1.0), 2)
    assert ids(await d.add(s("mm", 2.0), 2)) == ["aa"]


async def test_quota_is_per_user(d: Directory) -> None:
    await d.add(s("a1", 1, user="alice"), 1)
    assert await d.add(s("b1", 2, user="bob"), 1) == []
    assert ids(await d.add(s("a2", 3, user="alice"), 1)) == ["a1"]
    assert await d.count() == 2


async def test_lower_limit_kicks_several_at_once(d: Directory) -> None:
    for i in range(4):
        await d.add(s(f"s{i}", float(i)), 10)
    assert ids(await d.add(s("s4", 4.0), 2)) == ["s0", "s1", "s2"]
    assert await d.count() == 2


async def test_re_adding_the_same_session_replaces_it_without_kicking(d: Directory) -> None:
    await d.add(s("a", 1), 2)
    await d.add(s("b", 2), 2)
    assert await d.add(s("b", 3, hub="h2"), 2) == []
    got = (await d.sessions(["alice"]))["alice"]
    assert [(x.session_id, x.hub) for x in got] == [("a", "h1"), ("b", "h2")]
    assert await d.count() == 2


async def test_concurrent_adds_never_exceed_the_quota(d: Directory) -> None:
    results = await asyncio.gather(*(d.add(s(f"c{i:02d}", float(i), hub=f"h{i % 3}"), 5)
                                     for i in range(20)))
    kicked = [k for r in results for k in ids(r)]
    assert len(kicked) == 15
    assert len(set(kicked)) == 15  # nobody is kicked twice
    assert len((await d.sessions(["alice"]))["alice"]) == 5
    assert await d.count() == 5


async def test_invalid_limit_is_refused_and_changes_nothing(d: Directory) -> None:
    await d.add(s("a", 1), 5)
    with pytest.raises(ValueError):
        await d.add(s("b", 2), 0)
    assert ids((await d.sessions(["alice"]))["alice"]) == ["a"]
    assert await d.count() == 1


async def test_remove_deletes_only_that_session(d: Directory) -> None:
    await d.add(s("a", 1), 5)
    await d.add(s("b", 2), 5)
    assert await d.remove("alice", "a", "h1") is True
    assert ids((await d.sessions(["alice"]))["alice"]) == ["b"]
    assert await d.count() == 1


async def test_remove_is_compare_and_delete(d: Directory) -> None:
    await d.add(s("a", 1, hub="h1"), 5)
    assert not await d.remove("alice", "a", "h2")  # a stale hub cannot remove it
    await d.add(s("a", 2, hub="h2"), 5)  # the session moved (re-announced by h2)
    assert not await d.remove("alice", "a", "h1")
    assert ids((await d.sessions(["alice"]))["alice"]) == ["a"]
    assert await d.count() == 1
    assert await d.remove("alice", "a", "h2")
    assert not await d.remove("alice", "a", "h2")  # removing twice: False the second time
    assert await d.sessions(["alice"]) == {}  # the last one gone: the user is absent
    assert await d.count() == 0


@pytest.mark.parametrize(("user", "sid"), [("alice", "zzz"), ("carol", "a")])
async def test_removing_an_unknown_session_reports_false(d: Directory, user: str,
                                                         sid: str) -> None:
    await d.add(s("a", 1), 5)
    assert await d.remove(user, sid, "h1") is False
    assert await d.count() == 1


async def test_kicked_session_cannot_be_removed_again(d: Directory) -> None:
    await d.add(s("old", 1), 1)
    await d.add(s("new", 2), 1)
    assert await d.remove("alice", "old", "h1") is False
    assert await d.count() == 1


async def test_remove_hub_drops_only_that_hubs_sessions(d: Directory) -> None:
    await d.add(s("a1", 1, hub="dead"), 5)
    await d.add(s("b1", 2, user="bob", hub="dead"), 5)
    await d.add(s("a2", 3, hub="live"), 5)
    await d.add(s("c2", 4, user="carol", hub="live"), 5)
    assert await d.remove_hub("dead") == 2
    got = await d.sessions(["alice", "bob", "carol"])
    assert {u: ids(v) for u, v in got.items()} == {"alice": ["a2"], "carol": ["c2"]}
    assert await d.count() == 2
    assert await d.remove_hub("dead") == 0
    assert await d.remove_hub("live") == 2
    assert await d.count() == 0


async def test_quota_counts_only_live_sessions_after_remove_hub(d: Directory) -> None:
    await d.add(s("a1", 1, hub="dead"), 2)
    await d.add(s("a2", 2, hub="dead"), 2)
    await d.remove_hub("dead")
    assert await d.add(s("a3", 3), 2) == []


async def test_sync_hub_restores_and_prunes_but_keeps_newer_sessions(d: Directory) -> None:
    await d.add(s("gone", 1, hub="h1"), 5)  # the hub no longer holds it
    await d.add(s("new", 10, user="bob", hub="h1"), 5)  # announced after the snapshot
    await d.add(s("other", 2, user="carol", hub="h2"), 5)
    held = [s("kept", 3, hub="h1"), s("k2", 4, user="dave", hub="h1")]
    added, removed = await d.sync_hub("h1", held, before=5.0)
    assert (added, removed) == (2, 1)
    got = await d.sessions(["alice", "bob", "carol", "dave"])
    assert {u: ids(v) for u, v in got.items()} == {
        "alice": ["kept"], "bob": ["new"], "carol": ["other"], "dave": ["k2"]}
    assert await d.sync_hub("h1", held, before=5.0) == (0, 0)  # idempotent


async def test_a_re_sync_over_the_quota_kicks_the_oldest_once_enforced(d: Directory) -> None:
    """The directory lost alice's five sessions (a failover's lost writes) and admitted
    a sixth meanwhile; her hub's re-sync puts the five back (no quota check: they were
    admitted before). ``enforce_quota`` then removes the oldest beyond the limit and
    names her newest session as the kick's cause; users within it are left alone."""
    assert await d.add(s("late", 20.0, hub="h2"), 5) == []
    await d.add(s("b1", 1.0, user="bob", hub="h1"), 5)
    held = [s(f"s{i}", float(i), hub="h1") for i in range(5)]
    assert await d.sync_hub("h1", [*held, s("b1", 1.0, user="bob", hub="h1")],
                            before=10.0) == (5, 0)
    assert len((await d.sessions(["alice"]))["alice"]) == 6
    kicked = await d.enforce_quota(["alice", "bob", "nobody"], 5)
    assert kicked == [(s("s0", 0.0, hub="h1"), "late")]
    assert ids((await d.sessions(["alice"]))["alice"]) == ["s1", "s2", "s3", "s4", "late"]
    assert await d.count() == 6  # alice's five and bob's one
    assert await d.enforce_quota(["alice", "bob"], 5) == []  # nothing more to do


# -- where the backends differ on purpose ------------------------------------------------


async def test_memory_close_forgets_everything() -> None:
    """An in-process directory dies with its process: close() empties it."""
    d = MemoryDirectory()
    await d.add(s("a", 1), 5)
    await d.close()
    assert await d.count() == 0
    assert await d.sessions(["alice"]) == {}


async def test_redis_close_keeps_the_sessions_for_the_next_router(engine_url: str) -> None:
    """Redis is shared: a router that closes (restarts) leaves the sessions to the others."""
    prefix = redis_service.new_prefix()
    first = RedisDirectory(engine_url, prefix)
    await first.add(s("a", 1), 5)
    await first.close()
    second = RedisDirectory(engine_url, prefix)
    try:
        assert ids((await second.sessions(["alice"]))["alice"]) == ["a"]
        assert await second.count() == 1
    finally:
        await delete_keys(second)
        await second.close()


async def test_every_users_keys_share_one_cluster_slot(redis_cluster_url: str) -> None:
    """What makes the scripts legal on Redis Cluster: a user's hash and the hub sets its
    sessions are listed in hash to one slot, for any user id."""
    d = RedisDirectory(redis_cluster_url, redis_service.new_prefix())
    try:
        for user in ("alice", "bob", "{x}", "}{", "ü" * 50):
            slots = {await d.redis.cluster_keyslot(k) for k in (
                d.keys.user(user), d.keys.hub("h1", bucket(user)),
                d.keys.hub("{h2}", bucket(user)))}
            assert len(slots) == 1, (user, slots)
            await d.add(s("a", 1, user=user, hub="{h2}"), 5)
            assert ids((await d.sessions([user]))[user]) == ["a"]
        assert await d.remove_hub("{h2}") == 5
    finally:
        await delete_keys(d)
        await d.close()


async def test_a_restore_landing_behind_a_dead_hub_sweep_is_swept_next_round(
        engine_url: str) -> None:
    """A hub dying during its re-sync (docs/cluster.md): the late restore leaves the hub
    listed without a heartbeat, so the next sweep removes what it re-added."""
    d = RedisDirectory(engine_url, redis_service.new_prefix())
    try:
        await d.add(s("a", 1, hub="h1"), 5)
        await d.heartbeat(["h2"], ttl_s=30)
        assert await d.remove_hub("h1") == 1
        assert await d.dead_hubs() == []
        await d.sync_hub("h1", [s("a", 1, hub="h1"), s("b", 2, user="bob", hub="h1")], 0.0)
        assert await d.dead_hubs() == ["h1"]
        assert await d.remove_hub("h1") == 2
        assert await d.sessions(["alice", "bob"]) == {}
        assert await d.dead_hubs() == []
        assert await d.count() == 0
    finally:
        await delete_keys(d)
        await d.close()


async def test_a_failed_re_sync_leaves_no_restore_running(engine_url: str) -> None:
    """A re-sync whose first restore fails (Redis failing over) raises, and nothing of
    it runs afterwards: a restore still in flight or queued behind the failed one would
    land after the hub's sessions were announced gone and leave ghosts."""
    d = RedisDirectory(engine_url, redis_service.new_prefix())
    restore = d._restore
    running = 0
    started = 0

    async def failing_first(**kw: Any) -> Any:
        nonlocal running, started
        started += 1
        first = started == 1
        running += 1
        try:
            await asyncio.sleep(0)  # the other calls start meanwhile
            if first:
                raise RedisError("connection lost during failover")
            return await restore(**kw)
        finally:
            running -= 1

    d._restore = failing_first  # type: ignore[method-assign]
    users = [f"u{i}" for i in range(400)]
    assert len({bucket(u) for u in users}) > 64  # more bucket calls than run at once
    try:
        with pytest.raises(DirectoryUnavailable):
            await d.sync_hub("h1", [s(f"s{i}", 1, user=u, hub="h1")
                                    for i, u in enumerate(users)], 0.0)
        assert running == 0
        seen = started
        assert await d.remove_hub("h1") >= 0  # the hub's Offline, after the failure
        assert await d.sessions(users) == {}
        assert await d.count() == 0
        assert started == seen  # no call began after the re-sync had failed
    finally:
        await delete_keys(d)
        await d.close()


async def test_redis_liveness_epoch_and_topology(engine_url: str) -> None:
    d = RedisDirectory(engine_url, redis_service.new_prefix())
    try:
        topology = await d.topology()
        assert topology and topology == await d.topology()  # stable while nothing fails
        assert len(topology.split(",")) == (3 if d.engine.mode == "cluster" else 1)
        await d.add(s("a", 1, hub="h1"), 5)
        await d.add(s("b", 1, user="bob", hub="h2"), 5)
        await d.heartbeat(["h2"], ttl_s=30)
        assert await d.dead_hubs() == ["h1"]  # sessions recorded, no heartbeat
        await d.heartbeat(["h1"], ttl_s=0.05)
        assert await d.dead_hubs() == []

        # the 50 ms heartbeat expires
        await wait_for(d.dead_hubs, 5, "h1 dead again", until=lambda dead: dead == ["h1"],
                       interval=0.02)
        assert await d.claim_epoch("r1") is True
        assert await d.claim_epoch("r2") is False
        await d.redis.delete(d.keys.epoch)  # what a Redis restart without data looks like
        assert await d.claim_epoch("r2") is True
    finally:
        await delete_keys(d)
        await d.close()


async def test_redis_down_raises_a_retryable_error() -> None:
    with refused_port() as port:
        d = RedisDirectory(f"redis://127.0.0.1:{port}/0", "x:", timeout_s=0.2, retries=1)
        try:
            with pytest.raises(DirectoryUnavailable):
                await d.sessions(["alice"])
            with pytest.raises(DirectoryUnavailable):
                await d.add(s("a", 1), 5)
        finally:
            await d.close()


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
async def test_redis_down_raises_a_retryable_error_on_every_engine(scheme: str) -> None:
    """Also a cluster none of whose nodes answers: redis-py's cluster client raises
    RedisClusterUnreachableError there, which is no RedisError; it escaped as an
    unexpected error (stored sends answered 503, the router's loops logging tracebacks
    at full CPU)."""
    with refused_port() as port:
        path = "/0" if scheme == "redis" else ""
        d = RedisDirectory(f"{scheme}://127.0.0.1:{port}{path}", "x:", timeout_s=0.2,
                           retries=1)
        try:
            with pytest.raises(DirectoryUnavailable):
                await d.sessions(["alice"])
            with pytest.raises(DirectoryUnavailable):
                await d.add(s("a", 1), 5)
            with pytest.raises(DirectoryUnavailable):
                await d.topology()
            assert await d.ping() is False
        finally:
            await d.close()


async def test_more_calls_at_once_than_the_default_pool_all_succeed(engine_url: str) -> None:
    """A reconnect storm: a router runs up to 64 session announcements per linked hub at
    once. redis-py 8's default pool (100 connections) failed the 101st call at once
    ("Too many connections", a 4003 for that session); none may fail."""
    directory = open_directory(engine_url, redis_service.new_prefix())
    try:
        added = await asyncio.gather(*(directory.add(s(f"s{i}", 1.0 + i, user=f"u{i}"), 5)
                                       for i in range(300)))
        assert added == [[]] * 300
        found = await directory.sessions([f"u{i}" for i in range(300)])
        assert sorted(len(v) for v in found.values()) == [1] * 300
    finally:
        await delete_keys(directory)
        await directory.close()


async def test_a_call_that_swallows_its_cancellation_still_ends_at_the_deadline(
        engine_url: str) -> None:
    """redis-py can swallow the cancellation of a call while it reconnects, and the call
    ran on to its socket timeouts: a connect waited past the hub's 5 s instead of being
    refused at the directory's deadline. The caller gets ``DirectoryUnavailable`` at the
    deadline whatever the call does."""
    d = RedisDirectory(engine_url, redis_service.new_prefix(), deadline_s=0.2)
    finished = asyncio.Event()

    async def stubborn() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:  # swallowed once, as while reconnecting
            await asyncio.sleep(2)
        finished.set()
        return "late"

    try:
        with pytest.raises(DirectoryUnavailable, match=r"no answer within 0\.2 s"):
            await d._call(stubborn())
        assert not finished.is_set()  # answered at the deadline, not when the call ended
        await asyncio.wait_for(finished.wait(), 5)  # left behind, ends on its own
        # a caller with a shorter deadline of its own (an Online behind a re-sync) ends
        # at it too, not when the call gets round to its cancellation
        finished.clear()
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await d._call(stubborn())
        assert time.monotonic() - t0 < 1 and not finished.is_set()
        await asyncio.wait_for(finished.wait(), 5)
    finally:
        await d.close()


async def test_a_stopped_cluster_master_holds_up_only_the_lookups_of_its_users(
        redis_cluster_engine: Any) -> None:
    """Lookups made together share one pipelined round trip; on a Redis Cluster a master
    that stopped answering (until its replica takes over) held up and failed the
    lookups of users on the healthy masters too: sends to them were answered
    ``sessions: 0``. Each lookup is now answered once its own users are known; a
    ``partial`` one leaves out those it cannot know."""
    e = redis_cluster_engine
    d = RedisDirectory(e.url, redis_service.new_prefix())
    try:
        users = [f"u{i}" for i in range(30)]
        for u in users:
            await d.add(s(f"s-{u}", 1.0, user=u), 5)
        master = {u: e.master_of_slot(d.redis.keyslot(d.keys.user(u))) for u in users}
        victim = master["u0"]
        stuck = [u for u in users if master[u] == victim]
        healthy = [u for u in users if master[u] != victim]
        assert stuck and healthy
        os.kill(e.children[victim].pid, signal.SIGSTOP)
        try:
            # created in one turn: one batch
            of_healthy = asyncio.ensure_future(d.sessions(healthy))
            of_stuck = asyncio.ensure_future(d.sessions(stuck))
            of_all = asyncio.ensure_future(d.sessions(users, partial=True))
            found = await asyncio.wait_for(of_healthy, 1.0)
            assert sorted(found) == sorted(healthy)
            assert not of_stuck.done() and not of_all.done()
            # the others: known once the replica took over, or given up at the deadline
            done = await asyncio.gather(of_stuck, of_all, return_exceptions=True)
            assert isinstance(done[0], DirectoryUnavailable) or sorted(done[0]) == sorted(stuck), done
            assert not isinstance(done[1], BaseException), done
            assert set(healthy) <= set(done[1]) <= set(users)
        finally:
            os.kill(e.children[victim].pid, signal.SIGCONT)
            await asyncio.to_thread(e.wait_healthy)
        await delete_keys(d)
    finally:
        await d.close()
