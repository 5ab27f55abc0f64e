"""SDK tests: the real ``pushgate serve`` process (see tests/integration/conftest.py), on a
fixed port so that a restarted server is reachable at the same URL."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import ServerProcess, server_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_server(tmp_path: Path, *args: str, **env: str) -> ServerProcess:
    """A server on a free fixed port (not started); ``start()`` / ``stop(sig)`` it at will."""
    srv = ServerProcess(tmp_path / "data", server_env(**env), list(args))
    srv.port = free_port()
    return srv


@contextlib.contextmanager
def fixed_port_server(tmp_path: Path, *args: str, **env: str) -> Iterator[ServerProcess]:
    srv = make_server(tmp_path, *args, **env)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with fixed_port_server(tmp_path) as srv:
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
