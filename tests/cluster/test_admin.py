"""The admin dashboard of a cluster (2 hubs, 2 routers, Redis, MariaDB): any hub lists
every hub and router with health and version (routers' ``Gateway.Status``, hubs'
heartbeat stats), sessions per hub, rates from all of them; the login works on every
hub; a router that dies is shown down; user lookup finds sessions on the other hub."""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path
from typing import Any

import httpx

from tests.cluster.conftest import LIVENESS, direct_cluster
from tests.support.admin import admin_login, traffic, wait_sample
from tests.support.ws import ws_client

ADMIN_KEY = "cluster-admin-" + secrets.token_hex(8)


def _kinds(sample: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [n for n in sample["nodes"] if n["kind"] == kind]


async def test_cluster_dashboard_lists_nodes_and_counts(tmp_path: Path,
                                                        shared: dict[str, Any]) -> None:
    env = {**LIVENESS, "PUSHGATE_ADMIN_KEY": ADMIN_KEY}
    with direct_cluster(tmp_path, shared, routers=2, hub_env=env) as c:
        hub0, hub1 = c.hub(0), c.hub(1)
        async with httpx.AsyncClient(base_url=c.hub_urls[0], timeout=10) as http:
            assert (await admin_login(http, ADMIN_KEY)).status_code == 303
            # the cookie one hub issued is good on the other (no shared session store)
            async with httpx.AsyncClient(base_url=c.hub_urls[1], timeout=10,
                                         cookies=http.cookies) as other:
                assert (await other.get("/admin/api/users/nobody")).status_code == 200

            async with http.stream("GET", "/admin/api/stream") as r:
                assert r.status_code == 200
                lines = r.aiter_lines()

                def all_up(s: dict[str, Any]) -> bool:
                    return (len(_kinds(s, "router")) == 2 and len(_kinds(s, "hub")) == 2
                            and all(n["health"] == "ok" and n["version"] == "0.1.0"
                                    for n in s["nodes"]))

                sample = await wait_sample(lines, all_up)
                routers = _kinds(sample, "router")
                assert sorted(n["address"] for n in routers) == sorted(c.router_addrs)
                assert all(n["id"].startswith("router-") for n in routers)
                hub_ids = [n["id"] for n in _kinds(sample, "hub")]

                async with contextlib.AsyncExitStack() as stack:
                    # one session on hub-0, two on hub-1: the sessions per hub of both
                    clients = [
                        await stack.enter_async_context(ws_client(hub0, "cu1", dev="phone")),
                        await stack.enter_async_context(ws_client(hub1, "cu1", dev="laptop")),
                        await stack.enter_async_context(ws_client(hub1, "cu2", dev="tablet"))]
                    sample = await wait_sample(
                        lines, lambda s: sorted(s["sessions"].values()) == [1, 2])
                    assert set(sample["sessions"]) == set(hub_ids)
                    assert sample["point"]["sessions"] == 3
                    # sends counted by the routers, acks by the hubs (heartbeats)
                    async with traffic(hub0, clients, ["cu1", "cu2"]):
                        sample = await wait_sample(
                            lines, lambda s: s["point"]["sends"] > 0
                            and s["point"]["deliveries"] > 0 and s["point"]["acks"] > 0
                            and s["point"]["p99_ms"] is not None)
                    # the latest sends and their reports, through the routers
                    latest = (await http.get("/admin/api/reports?limit=1")).json()["reports"]
                    assert [(r["addressed"], r["stored"]) for r in latest] == [(2, 2)]
                    one = await http.get(f"/admin/api/reports/{latest[0]['report']}")
                    assert one.status_code == 200 and one.json()["addressed"] == 2
                    # user lookup from hub-0 finds cu1's sessions on both hubs
                    found = (await http.get("/admin/api/users/cu1")).json()
                    assert sorted(s["device"] for s in found["sessions"]) == ["laptop", "phone"]
                    assert len({s["hub"] for s in found["sessions"]}) == 2
                    assert found["read_state"]["head"] > 0

                # a router that dies is shown down (hubs stay ok through the other one)
                c.kill_router(1)
                sample = await wait_sample(lines, lambda s: any(
                    n["kind"] == "router" and n["health"] == "down" for n in s["nodes"]))
                down = [n for n in _kinds(sample, "router") if n["health"] == "down"]
                assert [n["address"] for n in down] == [c.router_addrs[1]]

                # a hub that dies is shown down once the routers stop listing it (it
                # vanished from the page: one hub fewer, not a hub down)
                c.kill_hub(1)
                sample = await wait_sample(lines, lambda s: any(
                    n["kind"] == "hub" and n["health"] == "down" for n in s["nodes"]),
                    timeout=30)
                hubs = {n["id"]: n for n in _kinds(sample, "hub")}
                assert set(hubs) == set(hub_ids), hubs
                assert sorted(n["health"] for n in hubs.values()) == ["down", "ok"]
                alive = [i for i, n in hubs.items() if n["health"] == "ok"]
                assert list(sample["sessions"]) == alive  # (the dead one counts no session)


async def test_dashboard_through_nginx(tmp_path: Path, shared: dict[str, Any],
                                       cluster_binaries: None) -> None:
    """Behind the shipped nginx (round-robin to 2 hubs): one login serves every
    request whichever hub answers it, and the event stream is not buffered."""
    env = {**LIVENESS, "PUSHGATE_ADMIN_KEY": ADMIN_KEY}
    with direct_cluster(tmp_path, shared, hub_env=env, nginx=True) as c:
        async with httpx.AsyncClient(base_url=c.url, timeout=10) as http:
            assert (await admin_login(http, "wrong-" + ADMIN_KEY)).status_code == 401
            assert (await admin_login(http, ADMIN_KEY)).status_code == 303
            for _ in range(6):  # both hubs answer some of them
                r = await http.get("/admin/api/users/nobody")
                assert r.status_code == 200, r.text
            async with http.stream("GET", "/admin/api/stream") as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                sample = await wait_sample(r.aiter_lines(), lambda s: len(_kinds(s, "hub")) == 2,
                                           timeout=20)
                assert len(_kinds(sample, "router")) == 1
