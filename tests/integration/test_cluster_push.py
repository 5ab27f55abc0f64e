"""The offline bridge in the cluster: devices registered through cluster hubs (their
HTTP API and websocket frame reach the router's store over gRPC), pushes queued by the
router, sent by a separate `pushgate bridge` process to fake APNs/FCM (real HTTP/2+TLS);
the ack of an online client travels hub -> router -> store so no push follows it."""

from __future__ import annotations

import asyncio
import queue
import subprocess
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests import services
from tests.bridge.conftest import TOPIC, Fakes, fakes  # noqa: F401 - the fixture
from tests.integration.cluster import Cluster
from tests.integration.conftest import pushgate_bin, server_env, ws_client

pytestmark = pytest.mark.timeout(120)

IOS, ANDROID, BOB_IOS = "c1" * 32, "alice-android-c", "d2" * 32
PUSH = {"title": "New message", "body": "Hi Alice", "badge": 2}


def start_bridge(env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([pushgate_bin(), "bridge", "--metrics-port", "0"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    while True:
        line = lines.get(timeout=30)
        if line.startswith("PUSHGATE_BRIDGE_READY"):
            return proc, int(line.rsplit("metrics_port=", 1)[1])
        if line == "":
            raise RuntimeError("pushgate bridge exited:\n" + "".join(output))


async def skipped_acked(port: int) -> None:
    async with httpx.AsyncClient() as http, asyncio.timeout(15):
        while True:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            if 'pushgate_push_skipped_total{reason="acked"} 1.0' in text:
                return
            await asyncio.sleep(0.05)


@pytest.fixture
async def cluster(tmp_path: Path, mysql_run_db: str, redis_server: str, redis_prefix: str,
                  fakes: Fakes) -> AsyncIterator[Cluster]:  # noqa: F811
    services.empty_tables(mysql_run_db)
    c = Cluster(tmp_path, server_env(
        PUSHGATE_STORE_URL=mysql_run_db, PUSHGATE_DIRECTORY_URL=redis_server,
        PUSHGATE_DIRECTORY_PREFIX=redis_prefix, PUSHGATE_DATA_DIR=str(tmp_path / "r"),
        PUSHGATE_PUSH_ENABLED="true", PUSHGATE_PUSH_ACK_WINDOW_MS="1000"))
    bridge: subprocess.Popen[str] | None = None
    try:
        # started from threads: the fakes live in this event loop and must answer the
        # bridge's start-up credential checks
        await asyncio.to_thread(c.add_router)
        await asyncio.to_thread(c.add_hub)
        await asyncio.to_thread(c.add_hub)
        bridge, c.bridge_metrics_port = await asyncio.to_thread(  # type: ignore[attr-defined]
            start_bridge, {**c.env, **fakes.settings_env()})
        yield c
    finally:
        if bridge is not None:
            bridge.terminate()
            await asyncio.to_thread(bridge.wait, 20)
            if bridge.stdout is not None:
                bridge.stdout.close()
        await asyncio.to_thread(c.stop)


async def test_offline_devices_pushed_online_acker_not(cluster: Cluster, fakes: Fakes) -> None:  # noqa: F811
    h0, h1 = cluster.hubs
    async with httpx.AsyncClient(base_url=h0.base_url) as http:  # alice's own token
        r = await http.post("/v1/devices", json={"platform": "apns", "token": IOS},
                            headers={"Authorization": f"Bearer {h0.token('alice', app=TOPIC)}"})
        assert r.status_code == 200, r.text
    async with h1.http() as http:  # her server adds her Android phone
        r = await http.put("/v1/users/alice/devices",
                           json={"platform": "fcm", "token": ANDROID, "app": TOPIC})
        assert r.status_code == 200, r.text
        r = await http.get("/v1/users/alice/devices")
        assert sorted(d["platform"] for d in r.json()["devices"]) == ["apns", "fcm"]
    async with ws_client(h1, "bob", app=TOPIC) as bob:
        reply = await bob.request({"type": "register_device", "platform": "apns",
                                   "token": BOB_IOS})
        assert reply["type"] == "reply" and reply["app"] == TOPIC
        async with h0.http() as http:
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
        await skipped_acked(cluster.bridge_metrics_port)  # type: ignore[attr-defined]
    assert BOB_IOS not in fakes.apns.state.counts
    assert fakes.apns.state.last[IOS]["payload"]["aps"]["alert"] == {
        "title": "New message", "body": "Hi Alice"}
