"""A Pushca client written from Pushca's document and its published browser client (not
pushgate's SDKs), for the tests: ``open_connection`` as the document's POST, then a
websocket that splits messages on ``@@``, acknowledges ``<id>@@<body>`` messages and
sends commands in the ``<uuid>@@<COMMAND>@@<json>`` form::

    async with pushca_client(srv, client_obj("alice")) as alice:
        assert await alice.message() == (None, "hello")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.api import api
from tests.support.waiting import wait_for

TIMEOUT = 10.0


class Target(Protocol):
    @property
    def base_url(self) -> str: ...

    @property
    def api_key(self) -> str: ...


def client_obj(account: str, device: str = "dev-1", workspace: str = "workSpaceMain",
               application: str = "MY_APPLICATION") -> dict[str, str]:
    return {"workSpaceId": workspace, "accountId": account, "deviceId": device,
            "applicationId": application}


async def open_connection(srv: Target, client: dict[str, str], *,
                          key: bool = True) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {srv.api_key}"} if key else {}
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=TIMEOUT) as http:
        r = await http.post("/open-connection", json={"client": client}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


class PushcaWs:
    """What Pushca's browser client does with its websocket, in Python: messages split on
    ``@@``; ``<id>@@<body>`` acknowledged (unless ``auto_ack`` is off); commands sent as
    ``<uuid>@@<COMMAND>@@<json>`` and answered by ``<id>@@ACKNOWLEDGE`` or
    ``<id>@@RESPONSE@@<body>``."""

    def __init__(self, ws: ClientConnection, auto_ack: bool) -> None:
        self.ws = ws
        self.auto_ack = auto_ack
        self.messages: asyncio.Queue[tuple[str | None, str]] = asyncio.Queue()
        self.answers: dict[str, asyncio.Future[str | None]] = {}
        self.raw: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for data in self.ws:
                assert isinstance(data, str)
                self.raw.append(data)
                parts = data.split("@@")
                if len(parts) > 1 and parts[1] in ("ACKNOWLEDGE", "RESPONSE"):
                    fut = self.answers.pop(parts[0], None)
                    if fut is not None and not fut.done():
                        fut.set_result(parts[2] if len(parts) > 2 else None)
                    continue
                if len(parts) == 2:
                    if self.auto_ack:
                        await self.command("ACKNOWLEDGE", {"messageId": parts[0]}, wait=False)
                    self.messages.put_nowait((parts[0], parts[1]))
                    continue
                self.messages.put_nowait((None, data))

    async def message(self, timeout: float = TIMEOUT) -> tuple[str | None, str]:
        """The next message: (messageId or None, body)."""
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def command(self, name: str, meta: dict[str, Any] | None, *, wait: bool = True,
                      answer_id: str | None = None, timeout: float = TIMEOUT) -> str | None:
        """Send a command; with ``wait``, its answer (None for ACKNOWLEDGE, the body of a
        RESPONSE). ``answer_id``: the id the answer comes under (default: the uuid)."""
        cid = str(uuid.uuid4())
        fut: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.answers[answer_id or cid] = fut
        text = f"{cid}@@{name}" + ("" if meta is None else f"@@{json.dumps(meta)}")
        await self.ws.send(text)
        if not wait:
            self.answers.pop(answer_id or cid, None)
            return None
        return await asyncio.wait_for(fut, timeout)

    async def no_message(self, within: float = 0.5) -> None:
        """Nothing arrives within ``within`` s (after what was sent before has been
        answered: call it after a round trip, e.g. a PING, to make it meaningful)."""
        with pytest.raises(TimeoutError):
            await self.message(within)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


@contextlib.asynccontextmanager
async def pushca(url: str, *, auto_ack: bool = True,
                 origin: str | None = None) -> AsyncIterator[PushcaWs]:
    async with connect(url, open_timeout=TIMEOUT, close_timeout=5,
                       origin=origin) as ws:  # type: ignore[arg-type]
        client = PushcaWs(ws, auto_ack)
        try:
            # a round trip: the session is registered (and in the directory) once the
            # hub answered a command sent after the handshake
            assert await client.command("PING", None) is None
            yield client
        finally:
            client._reader.cancel()


@contextlib.asynccontextmanager
async def pushca_client(srv: Target, client: dict[str, str],
                        **kw: Any) -> AsyncIterator[PushcaWs]:
    reply = await open_connection(srv, client)
    async with pushca(reply["browserAdvertisedUrl"], **kw) as c:
        yield c


async def wait_sessions(srv: Target, user: str, n: int = 1) -> None:
    """Until ``user`` has ``n`` sessions in the directory (its clients have connected)."""
    async with api(srv) as http:
        async def count() -> int:
            return len((await http.get(f"/v1/users/{user}/sessions")).json()["sessions"])

        await wait_for(count, TIMEOUT, f"{n} session(s) of {user}", until=lambda c: c >= n)
