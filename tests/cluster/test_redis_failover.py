"""The directory's Redis fails over under load: a Redis Cluster master killed with
``kill -9`` (its replica is promoted) and a Sentinel-managed primary killed with
``kill -9`` (the Sentinels promote the replica), each under a 2-hub cluster with
long-lived sessions, sessions connecting and disconnecting, and sends flowing.

What a user would notice, asserted: every send is answered 200 or with the documented
retryable error (503, ``retryable: true``); a connect during the switch is either
greeted or closed with 4003 (retryable); every accepted send is stored; the directory
converges — every live session findable on its hub, no ghost of a closed one — within
:data:`CONVERGE_S` of the kill. The measured times are printed (``-s``) and recorded in
docs/cluster.md ("Failover of the directory's Redis").
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from deploy.local.cluster import Endpoint
from pushgate.router.directory.keys import Keys
from tests import redis_engines, redis_service, services
from tests.cluster.conftest import direct_cluster
from tests.support.api import api
from tests.support.waiting import wait_for
from tests.support.ws import Client, ws_client

pytestmark = pytest.mark.timeout(240)

CONVERGE_S = 15.0  # documented bound (docs/cluster.md); measured 2-5 s here
STEADY = [f"steady{i}" for i in range(12)]
CHURN = [f"churn{i}" for i in range(6)]


@pytest.fixture(params=["cluster", "sentinel"])
def engine(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Redis Cluster: the run's cluster, whose killed node is started again afterwards
    (it rejoins as a replica within seconds: cheaper than a new cluster). Sentinel: one
    of this test's own (the Sentinels take ~15 s to count a returning primary as a
    replica again: a new set starts faster)."""
    if request.param == "cluster":
        e = request.getfixturevalue("redis_cluster_engine")
        try:
            yield e
        finally:
            e.heal()
        return
    e = services.require("Redis Sentinel tests", lambda: redis_engines.start_with_retries(
        redis_engines.SentinelEngine))
    try:
        yield e
    finally:
        e.close()


def kill(engine: Any, prefix: str) -> int:
    """``kill -9`` the primary holding the first steady user's sessions."""
    if isinstance(engine, redis_engines.RedisClusterEngine):
        from redis.crc import key_slot

        return engine.kill_master(key_slot(Keys(prefix).user(STEADY[0]).encode()))
    return int(engine.kill_primary())


async def sessions_of(http: httpx.AsyncClient, user: str) -> set[tuple[str, str]] | None:
    r = await http.get(f"/v1/users/{user}/sessions")
    if r.status_code != 200:
        assert r.status_code == 503 and r.json()["error"]["retryable"] is True, r.text
        return None
    return {(s["session"], s["hub"]) for s in r.json()["sessions"]}


async def stored_seqs(http: httpx.AsyncClient, user: str) -> set[int]:
    seqs: set[int] = set()
    after, more = 0, True
    while more:
        page = (await http.get(f"/v1/users/{user}/events?after={after}&limit=1000")).json()
        seqs |= {e["seq"] for e in page["events"]}
        more, after = page["more"], max(seqs, default=0)
    return seqs


async def test_directory_redis_failover_under_load(
        engine: Any, tmp_path: Path, store_url: str) -> None:
    prefix = redis_service.new_prefix("fo")
    shared = {"store_url": store_url, "migrate": False, "redis_url": engine.url,
              "redis_prefix": prefix}
    with direct_cluster(tmp_path, shared) as c:
        hubs: list[Endpoint] = [c.hub(0), c.hub(1)]
        hub_ids: dict[int, str] = {}
        live: dict[str, dict[str, str]] = {u: {} for u in STEADY + CHURN}  # sid -> hub id
        accepted: dict[str, list[int]] = {u: [] for u in STEADY}
        refused_sends: list[str] = []
        connect_closes: list[int | None] = []
        stop_churn, stop_sends = asyncio.Event(), asyncio.Event()

        async with contextlib.AsyncExitStack() as stack:
            steady: dict[str, Client] = {}
            for i, user in enumerate(STEADY):
                client = await stack.enter_async_context(ws_client(hubs[i % 2], user))
                steady[user] = client
            async with api(hubs[0]) as http:
                for i, user in enumerate(STEADY):  # the hub id each session is on
                    (sid, hub), = await sessions_of(http, user) or set()
                    assert sid == steady[user].hello["session"]
                    hub_ids.setdefault(i % 2, hub)
                    live[user][sid] = hub

            async def churn(user: str, n: int) -> None:
                """Sessions that come and go through the switch."""
                for k in itertools.count():
                    if stop_churn.is_set():
                        return
                    target = (n + k) % 2
                    try:
                        async with ws_client(hubs[target], user) as cl:
                            sid = cl.hello["session"]
                            live[user][sid] = hub_ids[target]
                            await asyncio.sleep(0.2)
                            del live[user][sid]
                    except ConnectionClosed as e:  # closed before hello
                        connect_closes.append(e.rcvd.code if e.rcvd else None)
                        await asyncio.sleep(0.1)
                    except InvalidStatus as e:
                        connect_closes.append(e.response.status_code)
                        await asyncio.sleep(0.1)

            async def sender(hub: Endpoint, tag: str) -> None:
                async with api(hub) as http:
                    for k in itertools.count():
                        if stop_sends.is_set():
                            return
                        user = STEADY[k % len(STEADY)]
                        r = await http.post("/v1/notifications", json={
                            "users": [user], "body": k, "id": f"{tag}{k}"})
                        if r.status_code == 200:
                            accepted[user].append(r.json()["results"][0]["seq"])
                        else:
                            assert r.status_code == 503, r.text
                            assert r.json()["error"]["retryable"] is True, r.text
                            refused_sends.append(r.json()["error"]["code"])
                        await asyncio.sleep(0.01)

            tasks = [asyncio.create_task(churn(u, n)) for n, u in enumerate(CHURN)]
            tasks += [asyncio.create_task(sender(h, t)) for h, t in zip(hubs, "ab", strict=True)]
            await wait_for(lambda: sum(map(len, accepted.values())), 20, "sends flowing",
                           until=lambda n: n >= 50)

            t_kill = time.monotonic()
            killed = await asyncio.to_thread(kill, engine, prefix)
            await asyncio.to_thread(engine.wait_healthy, 60)  # the replica promoted
            t_promoted = time.monotonic()
            stop_churn.set()
            await asyncio.gather(*tasks[:len(CHURN)])
            t_churn_end = time.monotonic()

            async with api(hubs[0]) as http:
                async def differences() -> dict[str, Any]:
                    """user -> (live sessions, what the directory lists) where they differ"""
                    found = await asyncio.gather(*(sessions_of(http, u) for u in live))
                    return {u: (set(live[u].items()), f)
                            for u, f in zip(live, found, strict=True)
                            if f != set(live[u].items())}

                await wait_for(differences, CONVERGE_S, "the directory: every live session "
                               "findable, no ghost", until=lambda d: not d, interval=0.05)
            t_converged = time.monotonic()
            stop_sends.set()
            await asyncio.gather(*tasks[len(CHURN):])

            # live delivery reaches every steady session again
            async with api(hubs[1]) as http:
                for user in STEADY:
                    r = await http.post("/v1/notifications", json={"users": [user],
                                                                    "body": "after"})
                    assert r.json()["results"][0]["sessions"] == 1, (user, r.text)
                    accepted[user].append(r.json()["results"][0]["seq"])
                    last = r.json()["results"][0]["seq"]
                    while (await steady[user].recv_type("event"))["seq"] != last:
                        pass
                # nothing accepted is lost
                for user in STEADY:
                    assert set(accepted[user]) <= await stored_seqs(http, user), user

        print(f"\n[{type(engine).__name__}] killed :{killed}; promoted after "
              f"{t_promoted - t_kill:.2f} s; churn stopped {t_churn_end - t_kill:.2f} s; "
              f"directory converged {t_converged - t_kill:.2f} s after the kill "
              f"({t_converged - t_churn_end:.2f} s after the last disconnect); "
              f"sends accepted {sum(map(len, accepted.values()))}, refused "
              f"{len(refused_sends)} {sorted(set(refused_sends))}; connects closed "
              f"before hello {sorted(set(map(str, connect_closes)))} x{len(connect_closes)}")
        assert t_converged - t_kill < CONVERGE_S
        assert set(connect_closes) <= {4003}, connect_closes
        assert not set(refused_sends) - {"directory_unavailable"}, refused_sends


async def test_a_restarted_primary_makes_the_hubs_resync(tmp_path: Path, store_url: str) -> None:
    """A primary replaced or restarted may come back without its last writes while the
    epoch marker survives (a replica promoted before it replicated them; here: a
    session's record dropped, then Redis restarted from its snapshot). The routers see
    a new primary ``run_id`` and the hubs re-sync: the session is findable again."""
    import redis

    with direct_cluster(tmp_path, {"store_url": store_url, "migrate": False}) as c:
        hub = c.hub(0)
        async with ws_client(hub, "hana") as hana, api(hub) as http:
            before = await sessions_of(http, "hana")
            assert {sid for sid, _ in before or set()} == {hana.hello["session"]}
            r = redis.Redis.from_url(c.redis_url)
            try:  # the write the new primary never got
                assert r.delete(Keys(c.redis_prefix).user("hana")) == 1
            finally:
                r.close()
            assert await sessions_of(http, "hana") == set()
            await asyncio.to_thread(c.restart_redis, flush=False)  # epoch kept, new run_id
            found = await wait_for(lambda: sessions_of(http, "hana"), 15, "hana re-synced",
                                   until=lambda f: bool(f))
            assert found == before
            r2 = await http.post("/v1/notifications", json={"users": ["hana"], "body": 1})
            assert r2.json()["results"][0]["sessions"] == 1
            assert (await hana.recv_type("event"))["seq"] == r2.json()["results"][0]["seq"]


async def test_a_session_admitted_while_the_directory_lost_the_others_is_within_quota_after_the_resync(
        tmp_path: Path, store_url: str) -> None:
    """The directory lost ines's two sessions (writes a new primary never got) and admitted
    a third meanwhile (0 of 2 listed); the hubs' re-sync puts the two back: the oldest
    beyond ``max_sessions_per_user`` is then kicked (4102, ``by`` her newest session), as
    a connect over the quota would have, not left over it until her next connect."""
    import redis

    from tests.cluster.conftest import LIVENESS

    quota = {**LIVENESS, "PUSHGATE_MAX_SESSIONS_PER_USER": "2"}
    with direct_cluster(tmp_path, {"store_url": store_url, "migrate": False},
                        hub_env=quota, router_env=quota) as c:
        hub = c.hub(0)
        async with ws_client(hub, "ines") as first, ws_client(hub, "ines") as second, \
                api(hub) as http:
            r = redis.Redis.from_url(c.redis_url)
            try:  # the writes the new primary never got
                assert r.delete(Keys(c.redis_prefix).user("ines")) == 1
            finally:
                r.close()
            async with ws_client(hub, "ines") as third:  # admitted: none listed
                await asyncio.to_thread(c.restart_redis, flush=False)  # new run_id: re-sync
                kicked = await asyncio.wait_for(first.recv_type("kicked"), 20)
                assert kicked["by"] == third.hello["session"]
                assert (await first.closed())[0] == 4102
                listed = await wait_for(lambda: sessions_of(http, "ines"), 15, "two listed",
                                        until=lambda f: f is not None and len(f) == 2)
                assert {sid for sid, _ in listed} == {second.hello["session"],
                                                      third.hello["session"]}
