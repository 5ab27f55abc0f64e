"""Issue #19's acceptance test: 2 hubs + 2 routers behind nginx, clients and senders
only through nginx, as a user would run it. While sends with ids flow, a hub is killed
(SIGKILL) and later a router stops in order (SIGTERM):

* the raw event frames of every connection (not deduped by a client) carry strictly
  increasing seqs: none twice, none out of order;
* every send answered 200 is delivered to every session of its user (a client that
  lost its hub reconnects through nginx with ``after=<last seq>``);
* every non-200 is pushgate's JSON error body with ``retryable: true`` (retried with
  the same id, as docs/http-api.md says);
* no send fails because of the router's orderly stop.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from deploy.local.cluster import LocalCluster
from tests.cluster.conftest import LIVENESS
from tests.support.api import api
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(240)

USERS = [f"u{i}" for i in range(10)]
SESSIONS = 2  # per user
SENDERS = 4
PHASE = 150  # accepted sends before each failure, and after the last


@dataclass
class Listener:
    """One client session: reconnects through nginx after its hub died; ``segments``
    are the event seqs of each connection, as they came off the wire."""

    user: str
    segments: list[list[int]] = field(default_factory=list)
    reconnects: int = 0

    @property
    def seen(self) -> set[int]:
        return {s for seg in self.segments for s in seg}

    async def run(self, c: LocalCluster, stop: asyncio.Event) -> None:
        while not stop.is_set():
            after = max(self.seen, default=None)
            url = f"{c.edge.ws_url}?token={c.token(self.user)}"
            if after is not None:
                url += f"&after={after}"
            seg: list[int] = []
            self.segments.append(seg)
            try:
                async with connect(url, open_timeout=10, max_queue=None) as ws:
                    async for raw in ws:
                        frame = orjson.loads(raw)
                        if frame["type"] == "event":
                            seg.append(frame["seq"])
            except (ConnectionClosed, OSError, TimeoutError):
                pass
            if not stop.is_set():
                self.reconnects += 1
                await asyncio.sleep(0.1)  # the SDK's first reconnect delay


@dataclass
class Sends:
    accepted: dict[str, set[int]] = field(default_factory=lambda: {u: set() for u in USERS})
    count: int = 0
    errors: list[tuple[float, int, str]] = field(default_factory=list)  # (time, status, body)


async def sender(c: LocalCluster, k: int, sends: Sends, stop: asyncio.Event) -> None:
    async with api(c.edge) as http:
        for i in itertools.count():
            if stop.is_set():
                return
            user = USERS[(k + i * SENDERS) % len(USERS)]
            body = {"users": [user], "body": {"k": k, "i": i}, "id": f"s{k}-{i}"}
            while True:  # a retryable error: retried with the same id
                r = await http.post("/v1/notifications", json=body)
                if r.status_code == 200:
                    sends.accepted[user].add(r.json()["results"][0]["seq"])
                    sends.count += 1
                    break
                sends.errors.append((time.monotonic(), r.status_code, r.text))
                await asyncio.sleep(0.05)


def is_retryable_json(status: int, text: str) -> bool:
    try:
        error = orjson.loads(text)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return False
    return status >= 500 and error.get("retryable") is True and bool(error.get("code"))


async def test_hub_killed_and_router_stopped_behind_nginx(
        cluster_binaries: None, tmp_path: Path, shared: dict[str, Any]) -> None:
    with LocalCluster(hubs=2, routers=2, workdir=tmp_path / "cluster", nginx=True,
                      nginx_access_log=False, hub_env=LIVENESS, router_env=LIVENESS,
                      shutdown_grace_s=5.0, **shared) as c:
        stop_listening, stop_sending = asyncio.Event(), asyncio.Event()
        listeners = [Listener(u) for u in USERS for _ in range(SESSIONS)]
        listening = [asyncio.create_task(x.run(c, stop_listening)) for x in listeners]
        async with api(c.edge) as http:  # every session registered before the first send
            for u in USERS:
                await wait_for(lambda u=u: http.get(f"/v1/users/{u}/sessions"), 20,
                               f"{u}'s sessions", until=lambda r: r.status_code == 200
                               and len(r.json()["sessions"]) == SESSIONS)
        sends = Sends()
        sending = [asyncio.create_task(sender(c, k, sends, stop_sending))
                   for k in range(SENDERS)]
        try:
            await wait_for(lambda: sends.count, 30, "sends before the kill",
                           until=lambda n: n >= PHASE)
            await asyncio.to_thread(c.kill_hub, 0)  # SIGKILL
            killed = sends.count
            await wait_for(lambda: sends.count, 30, "sends after the kill",
                           until=lambda n: n >= killed + PHASE)
            errors_before_stop = len(sends.errors)
            await asyncio.to_thread(c.stop_router, 0)  # SIGTERM: the drain; waits for exit
            stopped = sends.count
            await wait_for(lambda: sends.count, 30, "sends after the router stopped",
                           until=lambda n: n >= stopped + PHASE)
        finally:
            stop_sending.set()
            await asyncio.gather(*sending)
        router_stop_errors = sends.errors[errors_before_stop:]
        try:
            # every accepted send reaches every session of its user
            for x in listeners:
                await wait_for(lambda x=x: sends.accepted[x.user] - x.seen, 30,
                               f"{x.user}'s accepted sends delivered",
                               until=lambda missing: not missing)
        finally:
            stop_listening.set()
            for t in listening:
                t.cancel()
            await asyncio.gather(*listening, return_exceptions=True)

        bad = [(status, text) for _, status, text in sends.errors
               if not is_retryable_json(status, text)]
        assert bad == [], bad[:5]
        assert router_stop_errors == [], router_stop_errors[:5]
        for x in listeners:
            for seg in x.segments:
                inversions = [(a, b) for a, b in itertools.pairwise(seg) if a >= b]
                assert inversions == [], (x.user, inversions[:10])
        # the kill was felt: the sessions on hub-0 reconnected through nginx
        assert sum(x.reconnects for x in listeners) >= 1
        assert sum(len(s) for s in sends.accepted.values()) == sends.count
