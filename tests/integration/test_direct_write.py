"""Direct frame writes (pushgate.hub.ws.direct_writer) against the real uvicorn
websockets-sansio protocol that ``pushgate serve`` runs: the writer is found, its
frames reach a real client intact and in order with frames sent through ASGI, and it
refuses once the close handshake started (so the session queues instead)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
import websockets

from pushgate.hub.session import wire_text_frame
from pushgate.hub.ws import direct_writer


async def test_direct_writes_on_the_real_protocol() -> None:
    seen: dict[str, Any] = {}
    done = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        write = direct_writer(send)
        seen["found"] = write is not None
        if write is not None:
            await send({"type": "websocket.send", "text": "via asgi"})
            seen["wrote"] = [write(wire_text_frame(f"direct {i}")) for i in range(3)]
            await send({"type": "websocket.send", "text": "via asgi again"})
            await send({"type": "websocket.close", "code": 1000})
            seen["after_close"] = write(wire_text_frame("too late"))
        while (await receive())["type"] != "websocket.disconnect":
            pass
        done.set()

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)  # the client's connect waits in the backlog until uvicorn accepts
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, ws="websockets-sansio", ws_per_message_deflate=False,
                            log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            got = []
            async with websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
                async for message in ws:
                    got.append(message)
            await done.wait()
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
        sock.close()

    assert seen["found"], "direct_writer did not recognise uvicorn's websockets-sansio protocol"
    assert seen["wrote"] == [True, True, True]
    assert got == ["via asgi", "direct 0", "direct 1", "direct 2", "via asgi again"]
    assert seen["after_close"] is False
