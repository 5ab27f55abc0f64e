"""SDK tests: the real ``pushgate serve`` process (``tests/support/server.py``); a
restarted server keeps its port, so the clients reconnect to the same URL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess, running_server, server_env


def make_server(tmp_path: Path, *args: str, **env: str) -> ServerProcess:
    """A server (not started); ``start()`` / ``stop(sig)`` it at will: the first start
    binds port 0, the next ones the same port."""
    return ServerProcess(tmp_path / "data", server_env(**env), list(args))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path) as srv:
        yield srv


@dataclass
class Sender:
    """Sends stored events to ``user`` over HTTP in a loop, retrying each one (same
    idempotency ``id``) through connection errors and 503s; records every seq the
    server answered 200 for."""

    srv: ServerProcess
    user: str
    interval: float = 0.005
    acked: list[int] = field(default_factory=list)
    sent: int = 0
    retries: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.srv.base_url, timeout=5,
                                     headers={"Authorization": f"Bearer {self.srv.api_key}"}) as http:
            n = 0
            while not self._stop.is_set():
                n += 1
                body = {"users": [self.user], "body": {"n": n}, "id": f"{self.user}-{n}"}
                while True:
                    try:
                        r = await http.post("/v1/notifications", json=body)
                    except httpx.TransportError:
                        r = None
                    if r is not None and r.status_code == 200:
                        self.acked.append(r.json()["results"][0]["seq"])
                        self.sent = n
                        break
                    assert r is None or r.status_code >= 500, r.text
                    self.retries += 1
                    await asyncio.sleep(0.05)
                await asyncio.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()


async def http_head(srv: ServerProcess, user: str) -> int:
    async with srv.http() as http:
        r = await http.get(f"/v1/users/{user}/read-state")
        r.raise_for_status()
        return int(r.json()["head"])


async def stored_seqs(srv: ServerProcess, user: str, limit: int = 1000) -> list[int]:
    out: list[int] = []
    async with srv.http() as http:
        after = 0
        while True:
            r = await http.get(f"/v1/users/{user}/events", params={"after": after, "limit": limit})
            r.raise_for_status()
            data = r.json()
            out += [e["seq"] for e in data["events"]]
            if not data["more"]:
                return out
            after = out[-1]
