"""The admin dashboard's tests: a real ``pushgate serve`` with an ``admin_key``, real
Chromium for the page (tests/support/browser.py)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess, running_server
from tests.support.ws import Client

ADMIN_KEY = "admin-" + secrets.token_hex(12)


@pytest.fixture
def admin_server(tmp_path: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path, PUSHGATE_ADMIN_KEY=ADMIN_KEY) as srv:
        yield srv


async def login(http: httpx.AsyncClient, key: str = ADMIN_KEY) -> httpx.Response:
    return await http.post("/admin/login", data={"key": key})


@contextlib.asynccontextmanager
async def traffic(srv: ServerProcess, clients: list[Client], users: list[str],
                  interval: float = 0.05) -> AsyncIterator[list[int]]:
    """Sends to ``users`` every ``interval`` while the block runs; ``clients`` ack every
    event they get. Yields the list of the sends' HTTP statuses."""
    statuses: list[int] = []
    stop = asyncio.Event()

    async def sender() -> None:
        async with srv.http() as http:
            n = 0
            while not stop.is_set():
                n += 1
                r = await http.post("/v1/notifications",
                                    json={"users": users, "body": {"n": n}})
                statuses.append(r.status_code)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)

    async def acker(c: Client) -> None:
        while True:
            frame = await c.recv(timeout=60)
            if frame.get("type") == "event" and frame.get("seq"):
                await c.send({"type": "ack", "seq": frame["seq"]})

    tasks = [asyncio.create_task(sender()), *(asyncio.create_task(acker(c)) for c in clients)]
    try:
        yield statuses
    finally:
        stop.set()
        for t in tasks[1:]:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
