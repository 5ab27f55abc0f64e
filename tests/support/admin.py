"""The admin dashboard from a test: log in, read its server-sent events."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from tests.support.api import ApiTarget, api
from tests.support.waiting import wait_for
from tests.support.ws import Client


async def admin_login(http: httpx.AsyncClient, key: str) -> httpx.Response:
    """POST the login form; on success ``http`` holds the session cookie."""
    return await http.post("/admin/login", data={"key": key})


async def sse_events(lines: AsyncIterator[str], n: int) -> list[tuple[str, dict[str, Any]]]:
    """The next ``n`` events (name, decoded data) of a ``text/event-stream``."""
    out: list[tuple[str, dict[str, Any]]] = []
    name = ""
    async for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            out.append((name, json.loads(line[6:])))
            if len(out) == n:
                return out
    raise AssertionError(f"the stream ended after {out}")


async def wait_sample(lines: AsyncIterator[str], check: Callable[[dict[str, Any]], bool],
                      timeout: float = 30.0) -> dict[str, Any]:
    """The first ``sample`` event for which ``check`` is true (AssertionError with the
    last sample after ``timeout``)."""
    last: dict[str, Any] = {}

    async def scan() -> dict[str, Any]:
        nonlocal last
        while True:
            [(name, data)] = await sse_events(lines, 1)
            if name == "sample":
                last = data
                if check(data):
                    return data

    try:
        return await asyncio.wait_for(scan(), timeout)
    except TimeoutError:
        raise AssertionError(f"no sample matched within {timeout} s; last: {last}") from None


@contextlib.asynccontextmanager
async def traffic(srv: ApiTarget, clients: list[Client], users: list[str],
                  interval: float = 0.05) -> AsyncIterator[list[int]]:
    """Sends to ``users`` (every client is one of them) every ``interval`` while the
    block runs; ``clients`` ack every event they get. Yields the sends' HTTP statuses.
    On exit the sends stop and every client has received and acked every send."""
    statuses: list[int] = []
    stop = asyncio.Event()
    acked = [0] * len(clients)

    async def sender() -> None:
        async with api(srv) as http:
            n = 0
            while not stop.is_set():
                n += 1
                r = await http.post("/v1/notifications",
                                    json={"users": users, "body": {"n": n}})
                statuses.append(r.status_code)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)

    async def acker(i: int, c: Client) -> None:
        while True:
            frame = await c.recv(timeout=60)
            if frame.get("type") == "event" and frame.get("seq"):
                await c.send({"type": "ack", "seq": frame["seq"]})
                acked[i] += 1

    send_task = asyncio.create_task(sender())
    ackers = [asyncio.create_task(acker(i, c)) for i, c in enumerate(clients)]
    try:
        yield statuses
        stop.set()
        await send_task
        await wait_for(lambda: acked, 20, "every client's acks",
                       until=lambda a: all(n == len(statuses) for n in a))
    finally:
        stop.set()
        for t in [send_task, *ackers]:
            t.cancel()
        await asyncio.gather(send_task, *ackers, return_exceptions=True)
