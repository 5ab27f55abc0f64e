"""Websocket clients for the tests: connect with a token, wait on frames with a timeout.

``target`` is anything clients connect to (:class:`Endpoint`): a test server
(``tests.support.server.ServerProcess``), a hub of the local cluster
(``LocalCluster.hub(i)``) or the cluster's nginx (``LocalCluster.edge``)::

    async with ws_client(srv, "alice") as alice:        # hello received
        await alice.recv_type("event")
        reply = await alice.request({"type": "read", "seqs": [1]})
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson
from websockets.asyncio.client import ClientConnection, connect

FRAME_TIMEOUT = 10.0


class Endpoint(Protocol):
    @property
    def ws_url(self) -> str: ...

    def token(self, user: str, *, ttl: float = ..., **claims: Any) -> str: ...


class Client:
    """A real websocket client with helpers that wait on frames with a timeout."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.hello: dict[str, Any] = {}

    async def recv(self, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        """The next frame, decoded."""
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        return orjson.loads(raw)  # type: ignore[no-any-return]

    async def recv_type(self, kind: str, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        """The next frame of type ``kind`` (frames of other types are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.recv(max(0.01, deadline - time.monotonic()))
            if frame["type"] == kind:
                return frame

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(frame).decode())

    async def request(self, frame: dict[str, Any], timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        """Send ``frame`` with a new ``rid``; its reply (or error)."""
        rid = secrets.token_hex(4)
        await self.send({**frame, "rid": rid})
        deadline = time.monotonic() + timeout
        while True:
            f = await self.recv(max(0.01, deadline - time.monotonic()))
            if f.get("rid") == rid and f["type"] in ("reply", "error"):
                return f

    async def closed(self, timeout: float = FRAME_TIMEOUT) -> tuple[int | None, str]:
        """Wait for the server to close; return (code, reason)."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout):
                async for _ in self.ws:
                    pass
        await asyncio.wait_for(self.ws.wait_closed(), timeout)
        rcvd = self.ws.protocol.close_rcvd
        return (rcvd.code, rcvd.reason) if rcvd else (None, "")


@contextlib.asynccontextmanager
async def ws_connect(url: str, *, expect_hello: bool = True, origin: str | None = None,
                     max_queue: int | None = 16) -> AsyncIterator[Client]:
    """Connect to a websocket URL that carries its token (e.g. from open-connection);
    with ``expect_hello``, :attr:`Client.hello` is the server's first frame."""
    async with connect(url, open_timeout=10, close_timeout=5, origin=origin,  # type: ignore[arg-type]
                       max_queue=max_queue) as ws:
        client = Client(ws)
        if expect_hello:
            client.hello = await client.recv_type("hello")
        yield client


@contextlib.asynccontextmanager
async def ws_client(target: Endpoint, user: str = "", *, token: str | None = None,
                    after: int | None = None, expect_hello: bool = True,
                    origin: str | None = None, max_queue: int | None = 16,
                    **claims: Any) -> AsyncIterator[Client]:
    """Connect to ``target`` as ``user``; extra keyword arguments become token claims
    (ws, dev, app)."""
    url = f"{target.ws_url}?token={token if token is not None else target.token(user, **claims)}"
    if after is not None:
        url += f"&after={after}"
    async with ws_connect(url, expect_hello=expect_hello, origin=origin,
                          max_queue=max_queue) as client:
        yield client
