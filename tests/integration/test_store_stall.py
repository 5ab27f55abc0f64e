"""A cluster whose event store stops answering (a stalled MySQL, a lock held for long):
the hubs' HTTP API answers 503 ``store_unavailable`` (retryable) once the routers' store
deadline passes — not ``router_unavailable`` at the hubs' own call deadline, and a read
is not tried again, with a fresh deadline, on every other router (docs/cluster.md,
"Failures").

A hub (its Starlette app, served in this test's event loop) and two real routers
(:class:`~pushgate.router.node.RouterNode`: Redis directory, one SQLite file), whose
store calls are held at a gate that never opens."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pushgate.hub import remote
from pushgate.hub.app import create_app
from pushgate.hub.node import HubNode
from pushgate.router.node import STORE_DEADLINE_S, RouterNode
from pushgate.settings import Settings
from tests.support.waiting import wait_for

KEY = "store-stall-key"


class Cluster:
    def __init__(self, hub: HubNode, http: httpx.AsyncClient,
                 routers: list[RouterNode]) -> None:
        self.hub, self.http, self.routers = hub, http, routers
        self.stalled_calls = 0

    def stall_store(self, monkeypatch: pytest.MonkeyPatch, deadline_s: float | None) -> None:
        """Every store read and commit of both routers waits forever from now on; their
        store deadline becomes ``deadline_s``."""
        forever = asyncio.Event()

        async def stalled(*args: Any) -> Any:
            self.stalled_calls += 1
            await forever.wait()

        for node in self.routers:
            core = node.router
            monkeypatch.setattr(core, "config", dataclasses.replace(
                core.config, store_deadline_s=deadline_s))
            monkeypatch.setattr(core.committer, "append", stalled)
            for name in ("fetch", "read_state", "mark_read"):
                monkeypatch.setattr(core.store, name, stalled)


@pytest.fixture
async def cluster(tmp_path: Path, redis_server: str,
                  redis_prefix: str) -> AsyncIterator[Cluster]:
    common: dict[str, Any] = {"jwt_secret": "s" * 32, "api_keys": [KEY],
                              "gc_freeze_interval_s": 0}
    routers = []
    for i in range(2):
        node = RouterNode(Settings(
            data_dir=tmp_path / f"router{i}", router_listen="127.0.0.1:0",
            store_url=f"sqlite+aiosqlite:///{tmp_path}/events.db", directory_url=redis_server,
            directory_prefix=redis_prefix, **common))
        await node.start()
        routers.append(node)
    app = create_app(Settings(data_dir=tmp_path / "hub",
                              routers=[f"127.0.0.1:{r.port}" for r in routers], **common))
    hub: HubNode = app.state.node
    await hub.start()
    try:
        assert hub.routers is not None
        conns = hub.routers.conns
        await wait_for(lambda: sum(c.up for c in conns), 10, "both routers linked",
                       until=lambda n: n == 2)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://hub", timeout=30,
                                     headers={"Authorization": f"Bearer {KEY}"}) as http:
            r = await http.post("/v1/notifications", json={"users": ["ann"], "body": 1})
            assert r.status_code == 200, r.text
            yield Cluster(hub, http, routers)
    finally:
        await hub.stop()
        for node in routers:
            await node.stop(0)


def _error(r: httpx.Response) -> tuple[int, str, bool]:
    body = r.json()["error"]
    return r.status_code, body["code"], body["retryable"]


def test_the_routers_store_deadline_is_under_the_hubs_call_deadline() -> None:
    assert STORE_DEADLINE_S < remote.CALL_TIMEOUT_S


async def test_a_stalled_store_is_store_unavailable_for_reads_and_sends(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster.stall_store(monkeypatch, deadline_s=0.3)

    for path in ("/v1/users/ann/events", "/v1/users/ann/read-state"):
        assert _error(await cluster.http.get(path)) == (503, "store_unavailable", True)
    r = await cluster.http.post("/v1/users/ann/read", json={"seqs": [1]})
    assert _error(r) == (503, "store_unavailable", True)
    r = await cluster.http.post("/v1/notifications", json={"users": ["ann"], "body": 2,
                                                           "id": "m-2"})
    assert _error(r) == (503, "store_unavailable", True)
    assert "retry" in r.json()["error"]["message"]


async def test_a_read_that_ran_out_of_its_deadline_is_not_tried_on_the_next_router(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # routers without a store deadline of their own: the hub's deadline ends the call,
    # once for the whole call, whatever the number of routers
    cluster.stall_store(monkeypatch, deadline_s=None)
    monkeypatch.setattr(remote, "CALL_TIMEOUT_S", 0.5)

    r = await cluster.http.get("/v1/users/ann/events")

    assert _error(r) == (503, "router_unavailable", True)
    assert cluster.stalled_calls == 1


async def test_a_send_committed_after_its_deadline_is_counted_and_a_retry_is_its_duplicate(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store answers after the router's deadline, while the send's batch was being
    committed: the caller got 503 ``store_unavailable``, but the event is stored, so the
    router delivers and counts it when the commit ends (the report says ``stored: 1``),
    and a retry with the same ``id`` is its duplicate (docs/http-api.md, errors)."""
    gate = asyncio.Event()
    for node in cluster.routers:
        core = node.router
        monkeypatch.setattr(core, "config", dataclasses.replace(core.config,
                                                                store_deadline_s=0.3))
        append = core.store.append

        async def slow(events: Any, append: Any = append) -> Any:
            await gate.wait()  # the commit is under way past the deadline
            return await append(events)

        monkeypatch.setattr(core.store, "append", slow)
    r = await cluster.http.post("/v1/notifications", json={"users": ["ann"], "body": 2,
                                                           "id": "late-1"})
    assert _error(r) == (503, "store_unavailable", True)
    gate.set()

    async def report() -> httpx.Response:
        return await cluster.http.get("/v1/notifications/late-1")

    found = await wait_for(report, 10, "the late commit counted",
                           until=lambda r: r.status_code == 200)
    assert (found.json()["addressed"], found.json()["stored"]) == (1, 1)
    again = await cluster.http.post("/v1/notifications", json={"users": ["ann"], "body": 2,
                                                               "id": "late-1"})
    assert again.status_code == 200, again.text
    assert again.json()["results"][0]["duplicate"] is True
    events = (await cluster.http.get("/v1/users/ann/events")).json()["events"]
    assert [e["id"] for e in events].count("late-1") == 1
