"""The offline bridge in the cluster: devices registered through cluster hubs (their
HTTP API and websocket frame reach the router's store over gRPC), pushes queued by the
router, sent by a separate `pushgate bridge` process to fake APNs/FCM (real HTTP/2+TLS);
the ack of an online client travels hub -> router -> store so no push follows it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.local.cluster import LocalCluster
from tests.bridge.conftest import TOPIC, Fakes, fakes  # noqa: F401 - the fixture
from tests.cluster.conftest import direct_cluster
from tests.support.api import api
from tests.support.server import BridgeProcess, server_env
from tests.support.waiting import wait_for
from tests.support.ws import ws_client

pytestmark = pytest.mark.timeout(120)

IOS, ANDROID, BOB_IOS = "c1" * 32, "alice-android-c", "d2" * 32
PUSH = {"title": "New message", "body": "Hi Alice", "badge": 2}
PUSH_ENV = {"PUSHGATE_PUSH_ENABLED": "true", "PUSHGATE_PUSH_ACK_WINDOW_MS": "1000"}


@pytest.fixture
async def cluster(tmp_path: Path, shared: dict[str, Any],
                  fakes: Fakes) -> AsyncIterator[tuple[LocalCluster, BridgeProcess]]:  # noqa: F811
    async with direct_cluster(tmp_path, shared, router_env=PUSH_ENV) as c:
        bridge = BridgeProcess(server_env(PUSHGATE_STORE_URL=c.store_url, **PUSH_ENV,
                                          **fakes.settings_env()),
                               tmp_path / "bridge.log", "--metrics-port", "0",
                               "--metrics-host", "0.0.0.0")
        # from a thread: the fakes live in this event loop and must answer the bridge's
        # start-up credential checks
        await asyncio.to_thread(bridge.start)
        try:
            yield c, bridge
        finally:
            await asyncio.to_thread(bridge.stop)


async def skipped_acked(port: int) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    line = 'pushgate_push_skipped_total{reason="acked"} '
    return next((float(x[len(line):]) for x in text.splitlines() if x.startswith(line)), 0.0)


async def test_offline_devices_pushed_online_acker_not(
        cluster: tuple[LocalCluster, BridgeProcess], fakes: Fakes) -> None:  # noqa: F811
    c, bridge = cluster
    h0, h1 = c.hub(0), c.hub(1)
    async with httpx.AsyncClient(base_url=h0.base_url) as http:  # alice's own token
        r = await http.post("/v1/devices", json={"platform": "apns", "token": IOS},
                            headers={"Authorization": f"Bearer {h0.token('alice', app=TOPIC)}"})
        assert r.status_code == 200, r.text
    async with api(h1) as http:  # her server adds her Android phone
        r = await http.put("/v1/users/alice/devices",
                           json={"platform": "fcm", "token": ANDROID, "app": TOPIC})
        assert r.status_code == 200, r.text
        r = await http.get("/v1/users/alice/devices")
        assert sorted(d["platform"] for d in r.json()["devices"]) == ["apns", "fcm"]
    async with ws_client(h1, "bob", app=TOPIC) as bob:
        reply = await bob.request({"type": "register_device", "platform": "apns",
                                   "token": BOB_IOS})
        assert reply["type"] == "reply" and reply["app"] == TOPIC
        async with api(h0) as http:
            r = await http.post("/v1/notifications", json={
                "users": ["alice", "bob"], "body": {"n": 1}, "push": PUSH})
        assert r.status_code == 200, r.text
        assert [(x["user"], x["sessions"], x["push"]) for x in r.json()["results"]] == [
            ("alice", 0, "queued"), ("bob", 1, "queued")]
        event = await bob.recv_type("event")
        await bob.send({"type": "ack", "seq": event["seq"]})
        await fakes.apns.state.wait(lambda: IOS in fakes.apns.state.counts, 15)
        await fakes.fcm.state.wait(lambda: ANDROID in fakes.fcm.state.counts, 15)
        # bob's push fell due after the 1 s ack window; the worker found his ack
        assert bridge.metrics_port is not None
        await wait_for(lambda: skipped_acked(bridge.metrics_port), 15,  # type: ignore[arg-type]
                       "bob's push skipped as acked", until=lambda n: n == 1)
    assert BOB_IOS not in fakes.apns.state.counts
    assert fakes.apns.state.last[IOS]["payload"]["aps"]["alert"] == {
        "title": "New message", "body": "Hi Alice"}


def _outside_address() -> str | None:
    """An address of this host other than loopback (what a Prometheus elsewhere uses)."""
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            addr = str(info[4][0])
            if not addr.startswith("127."):
                return addr
    return None


async def test_the_bridge_metrics_can_be_scraped_from_another_host(
        cluster: tuple[LocalCluster, BridgeProcess]) -> None:
    """deploy.md: scrape every bridge's metrics: ``--metrics-host 0.0.0.0`` listens on
    every interface, not only on loopback."""
    _, bridge = cluster
    addr = _outside_address()
    if addr is None:
        pytest.skip("this host has no address but loopback")
    async with httpx.AsyncClient() as http:
        r = await http.get(f"http://{addr}:{bridge.metrics_port}/metrics", timeout=10)
    assert r.status_code == 200 and "pushgate_push_sent_total" in r.text
