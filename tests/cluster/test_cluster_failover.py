"""End to end through real nginx, with routers, Redis and MariaDB (deploy/local):
a hub killed with SIGKILL under load, and the cluster-wide session quota."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pushgate_client import Client, Event
from websockets.exceptions import ConnectionClosedError

from deploy.local.cluster import LocalCluster
from tests.cluster.conftest import api, make_cluster, recv_type, until, ws

pytestmark = [pytest.mark.needs_router, pytest.mark.timeout(180)]

LIVENESS = {"PUSHGATE_HUB_HEARTBEAT_TTL_S": "2"}


@pytest.fixture
def cluster(cluster_binaries: None, mysql_server: str, tmp_path: Path) -> Iterator[LocalCluster]:
    with make_cluster(tmp_path, mysql_server, hubs=2, routers=1, hub_env=LIVENESS,
                      router_env=LIVENESS) as c:
        yield c


class Sender:
    """Business server through nginx: stored sends to ``user``, each retried with the same
    idempotency id until a 200; records the seqs answered with 200."""

    def __init__(self, c: LocalCluster, user: str) -> None:
        self.c, self.user = c, user
        self.acked: list[int] = []
        self.retries = 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        async with api(self.c) as http:
            n = 0
            while not self._stop.is_set():
                n += 1
                body = {"users": [self.user], "body": {"n": n}, "id": f"{self.user}-{n}"}
                while True:
                    try:
                        r: httpx.Response | None = await http.post("/v1/notifications", json=body)
                    except httpx.TransportError:
                        r = None
                    if r is not None and r.status_code == 200:
                        self.acked.append(r.json()["results"][0]["seq"])
                        break
                    assert r is None or r.status_code >= 500, r.text
                    self.retries += 1
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()


async def test_hub_killed_client_resumes_through_nginx_and_nothing_is_lost(
        cluster: LocalCluster) -> None:
    c = cluster
    got: list[Event] = []
    client = Client(c.url, token_provider=lambda: c.token("zoe"), after=0, backoff_base=0.1,
                    backoff_cap=1.0, connect_timeout=3)
    sender = Sender(c, "zoe")

    async def collect() -> None:
        async for e in client:
            got.append(e)

    async with client:
        reader = asyncio.create_task(collect())
        await client.wait_connected(15)
        first_session = client.session
        holder = next(i for i in range(c.n_hubs) if c.hub_sessions(i))
        sending = asyncio.create_task(sender.run())
        await until(lambda: len(sender.acked) >= 20, "20 sends before the kill")
        await asyncio.to_thread(c.kill_hub, holder)
        killed_at = time.monotonic()
        # the client comes back through nginx, on the other hub
        await until(lambda: client.session not in (None, first_session), "reconnect", 20)
        other = 1 - holder
        assert c.hub_sessions(other) == 1
        # the dead hub's session leaves the directory within the liveness window
        async with api(c) as http:
            async def only_live_session() -> bool:
                r = await http.get("/v1/users/zoe/sessions")
                return [s["session"] for s in r.json()["sessions"]] == [client.session]

            while not await only_live_session():
                assert time.monotonic() - killed_at < 10, "dead hub's session still listed"
                await asyncio.sleep(0.1)
        target = len(sender.acked) + 20
        await until(lambda: len(sender.acked) >= target, "20 sends after the kill")
        sender.stop()
        await sending
        async with api(c) as http:
            head = (await http.get("/v1/users/zoe/read-state")).json()["head"]
        await until(lambda: client.last_seq == head, f"client at head {head}", 20)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    seqs = [e.seq for e in got]
    assert seqs == list(range(1, head + 1)), "every stored event exactly once, in order"
    assert set(sender.acked) <= set(seqs)


async def test_sixth_session_through_nginx_kicks_the_oldest_on_either_hub(
        cluster: LocalCluster) -> None:
    c = cluster
    async with ws(c, "quinn") as first, contextlib.AsyncExitStack() as stack:
        await recv_type(first, "hello")
        for _ in range(4):
            await recv_type(await stack.enter_async_context(ws(c, "quinn")), "hello")
        counts = [c.hub_sessions(i) or 0 for i in range(c.n_hubs)]
        assert sum(counts) == 5 and min(counts) >= 1, f"nginx spread them: {counts}"
        async with ws(c, "quinn") as sixth:
            hello = await recv_type(sixth, "hello")
            kicked = await recv_type(first, "kicked")
            assert kicked["by"] == hello["session"]
            with pytest.raises(ConnectionClosedError):  # 4102 is not a normal closure
                async with asyncio.timeout(10):
                    async for _ in first:
                        pass
            assert first.close_code == 4102
