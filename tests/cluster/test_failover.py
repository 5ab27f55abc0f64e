"""The cluster survives its pieces failing: a hub killed (SIGKILL), a router restarted
under load, Redis restarted with its data gone. No accepted send is lost, seqs are
never reused, and the directory is rebuilt from the hubs."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.local.cluster import Endpoint, LocalCluster
from tests.cluster.conftest import direct_cluster
from tests.support.api import api
from tests.support.waiting import wait_for
from tests.support.ws import ws_client

pytestmark = pytest.mark.timeout(180)


async def post(hub: Endpoint, body: dict[str, object]) -> httpx.Response:
    async with api(hub) as http:
        return await http.post("/v1/notifications", json=body)


async def session_count(hub: Endpoint, user: str) -> int:
    async with api(hub) as http:
        r = await http.get(f"/v1/users/{user}/sessions")
    return len(r.json()["sessions"]) if r.status_code == 200 else -1


async def test_hub_killed_sessions_leave_and_clients_resume_elsewhere(
        cluster: LocalCluster) -> None:
    h0, h1 = cluster.hub(0), cluster.hub(1)
    async with ws_client(h0, "dave") as dave:
        r = await post(h1, {"users": ["dave"], "body": 1})
        assert (await dave.recv_type("event"))["seq"] == r.json()["results"][0]["seq"] == 1
        await asyncio.to_thread(cluster.kill_hub, 0)
        # accepted while dave is away: stored, nobody live to deliver to
        accepted = []
        for i in range(2, 6):
            r = await post(h1, {"users": ["dave"], "body": i})
            assert r.status_code == 200
            accepted.append(r.json()["results"][0]["seq"])
        assert accepted == [2, 3, 4, 5]
        # the dead hub's session leaves the directory within the liveness window (2 s)
        t0 = time.monotonic()
        await wait_for(lambda: session_count(h1, "dave"), 10, "the dead hub's session gone",
                       until=lambda n: n == 0)
        assert time.monotonic() - t0 < 8
    # the client reconnects to the other hub and gets everything after its last seq,
    # in order, once
    async with ws_client(h1, "dave", after=1) as again:
        seqs = [(await again.recv_type("event"))["seq"] for _ in accepted]
        assert seqs == accepted
        r = await post(h1, {"users": ["dave"], "body": "live"})
        assert (await again.recv_type("event"))["seq"] == 6


async def test_router_restart_hubs_resync_and_nothing_accepted_is_lost(
        tmp_path: Path, shared: dict[str, Any]) -> None:
    # a short drain: the router's SIGTERM waits that long for the hubs' HubLink streams
    with direct_cluster(tmp_path, shared, shutdown_grace_s=1.0) as c:
        h0, h1 = c.hub(0), c.hub(1)
        async with ws_client(h1, "erin") as erin:
            accepted: list[int] = []
            failures: list[int] = []
            done = asyncio.Event()

            async def sender() -> None:  # a steady rate, across the whole restart
                async with api(h0) as http:
                    i = 0
                    while not done.is_set():
                        r = await http.post("/v1/notifications", json={
                            "users": ["erin"], "body": i, "id": f"e{i}"})
                        if r.status_code == 200:
                            accepted.append(r.json()["results"][0]["seq"])
                        else:  # the gap: a retryable error, never a silent drop
                            assert r.status_code == 503, r.text
                            assert r.json()["error"]["retryable"] is True
                            failures.append(i)
                        i += 1
                        await asyncio.sleep(0.03)

            task = asyncio.create_task(sender())
            await wait_for(lambda: len(accepted), 10, "sends before the restart",
                           until=lambda n: n >= 10)
            await asyncio.to_thread(c.stop_router, 0)
            await wait_for(lambda: failures, 10, "a send refused while the router is down")
            await asyncio.to_thread(c.start_router, 0)  # same address: hubs reconnect
            for i in range(c.n_hubs):  # both hubs linked again
                await wait_for(lambda i=i: asyncio.to_thread(c.hub_ready, i), 20,
                               f"hub {i} ready (/readyz)")
            before = len(accepted)
            await wait_for(lambda: len(accepted), 10, "sends accepted after the restart",
                           until=lambda n: n > before)
            done.set()
            await task
            # erin's session is back in the (re-synced) directory and live delivery works
            await wait_for(lambda: session_count(h0, "erin"), 10, "erin re-synced",
                           until=lambda n: n == 1)
            r = await post(h0, {"users": ["erin"], "body": "after"})
            last = r.json()["results"][0]["seq"]
            assert r.json()["results"][0]["sessions"] == 1
            got: set[int] = set()
            while last not in got:
                got.add((await erin.recv_type("event"))["seq"])
        async with api(h1) as http:
            r = await http.get("/v1/users/erin/events?after=0&limit=1000")
        stored = [e["seq"] for e in r.json()["events"]]
        assert stored == list(range(1, len(stored) + 1))  # dense, no reuse
        assert set(accepted) <= set(stored)


async def test_redis_restart_without_data_directory_rebuilt_seqs_continue(
        tmp_path: Path, shared: dict[str, Any]) -> None:
    store = {"store_url": shared["store_url"], "migrate": False}
    with direct_cluster(tmp_path, store) as c:  # a private Redis, to restart
        h0, h1 = c.hub(0), c.hub(1)
        async with ws_client(h0, "frank") as frank, ws_client(h1, "gina") as gina:
            r = await post(h1, {"users": ["frank", "gina"], "body": 1})
            assert [x["sessions"] for x in r.json()["results"]] == [1, 1]
            await frank.recv_type("event")
            await gina.recv_type("event")
            await asyncio.to_thread(c.restart_redis, flush=True)  # its data is gone
            # hubs re-sync when the routers notice the lost epoch
            for user in ("frank", "gina"):
                await wait_for(lambda user=user: session_count(h0, user), 15,
                               f"{user} re-synced", until=lambda n: n == 1)
            r = await post(h0, {"users": ["frank", "gina"], "body": 2})
            assert r.status_code == 200
            # seqs come from MariaDB: they continue, never reused
            assert [(x["seq"], x["sessions"]) for x in r.json()["results"]] == [(2, 1), (2, 1)]
            assert (await frank.recv_type("event"))["seq"] == 2
            assert (await gina.recv_type("event"))["seq"] == 2
            # client to client across hubs again
            reply = await gina.request({"type": "send", "users": ["frank"], "body": "hi"})
            assert [(x["seq"], x["sessions"]) for x in reply["results"]] == [(3, 1)]
            ev = await frank.recv_type("event")
            assert ev["seq"] == 3 and ev["body"]["from"]["user"] == "gina"


async def test_router_sigterm_with_another_router_up_fails_no_send(
        tmp_path: Path, shared: dict[str, Any]) -> None:
    """A router stopping in order (SIGTERM) tells its hubs it is leaving; they route new
    sends to the other router at once, it answers what it has, then goes: no send fails
    (issue #19, graceful router drain). Sends and websocket ack-sends flow throughout."""
    with direct_cluster(tmp_path, shared, routers=2, shutdown_grace_s=5.0) as c:
        h0, h1 = c.hub(0), c.hub(1)
        async with ws_client(h1, "finn") as finn:
            accepted: list[int] = []
            failed: list[str] = []
            done = asyncio.Event()

            async def sender(hub: Endpoint, tag: str) -> None:
                async with api(hub) as http:
                    i = 0
                    while not done.is_set():
                        r = await http.post("/v1/notifications", json={
                            "users": ["finn"], "body": i, "id": f"{tag}{i}"})
                        if r.status_code == 200:
                            accepted.append(r.json()["results"][0]["seq"])
                        else:
                            failed.append(r.text)
                        i += 1

            tasks = [asyncio.create_task(sender(h, t)) for h, t in ((h0, "a"), (h1, "b"))]
            await wait_for(lambda: len(accepted), 10, "sends before the stop",
                           until=lambda n: n >= 50)
            await asyncio.to_thread(c.stop_router, 0)  # SIGTERM, waits for it to exit
            before = len(accepted)
            await wait_for(lambda: len(accepted), 10, "sends after the stop",
                           until=lambda n: n >= before + 50)
            done.set()
            await asyncio.gather(*tasks)
            assert failed == []
            # finn's connection: strictly increasing seqs, each at most once, and none
            # missing (a seq overtaken by a later one from the other router is waited
            # for, or fetched by the hub), up to the last accepted one
            got: list[int] = []
            while not got or got[-1] < max(accepted):
                got.append((await finn.recv_type("event"))["seq"])
            assert all(a < b for a, b in itertools.pairwise(got))
            assert set(accepted) <= set(got)
            stored: set[int] = set()
            async with api(h0) as http:  # and every accepted send is stored
                more, after = True, 0
                while more:
                    page = (await http.get(f"/v1/users/finn/events?after={after}")).json()
                    stored |= {e["seq"] for e in page["events"]}
                    more, after = page["more"], max(stored, default=0)
            assert set(accepted) <= stored


async def test_a_router_started_after_every_router_was_down_keeps_the_live_hubs(
        tmp_path: Path, shared: dict[str, Any]) -> None:
    """Hub heartbeats are kept by the routers: with the only router down longer than the
    ttl they expire, and the new router's first liveness pass swept the live hubs as
    dead before they linked again (their sessions left the directory for that while:
    sends found none)."""
    from pushgate.router.directory.redis import RedisDirectory

    with direct_cluster(tmp_path, shared) as c:
        h0, h1 = c.hub(0), c.hub(1)
        async with ws_client(h0, "olga") as olga:
            r = await post(h1, {"users": ["olga"], "body": "first"})
            assert (await olga.recv_type("event"))["seq"] == 1
            await asyncio.to_thread(c.kill_router, 0)

            async def readiness() -> tuple[int, str]:
                async with api(h0) as http:
                    r = await http.get("/readyz")
                return r.status_code, r.json()["status"]

            # not "starting": it started long ago, and has no router now
            await wait_for(readiness, 15, "the hub unready", until=lambda r: r[0] == 503)
            assert await readiness() == (503, "no_router")
            directory = RedisDirectory(c.redis_url, c.redis_prefix)
            try:  # both hubs' heartbeats expired (no router keeps them)
                await wait_for(directory.dead_hubs, 15, "the hubs' heartbeats expired",
                               until=lambda dead: len(dead) == 2)
            finally:
                await directory.close()
            log = c.workdir / "router-0.log"
            log.write_text("")  # (the new router's lines only)
            await asyncio.to_thread(c.start_router, 0)
            for i in range(c.n_hubs):
                await wait_for(lambda i=i: asyncio.to_thread(c.hub_ready, i), 20,
                               f"hub {i} linked again")
            r = await post(h1, {"users": ["olga"], "body": "after"})
            assert r.status_code == 200 and r.json()["results"][0]["sessions"] == 1
            assert (await olga.recv_type("event"))["seq"] == 2
            text = log.read_text()
            assert "hub is dead" not in text, text[-2000:]
