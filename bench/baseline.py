"""Hand-written baseline for the benchmarks: the least a websocket push server can do.

A Starlette app under uvicorn with the same uvicorn options as ``pushgate serve``
(uvloop, httptools, ``ws="websockets-sansio"``, no per-message deflate, no access log,
20 s pings), holding a dict user -> set of websockets. No storage, no auth.

- ``GET /ws?user=U``  websocket; the server sends ``{"type":"hello"}`` once the
  session is registered, then writes every notification for U as a text frame.
- ``POST /send``      ``{"user": U, "body": {...}}`` -> writes the body JSON to U's
  sockets; replies ``{"sessions": n}``.
- ``POST /broadcast`` ``{"body": {...}}`` -> writes the body JSON to every socket.

Run: ``python -m bench.baseline [--port 0]``; prints
``BASELINE_LISTENING http://127.0.0.1:PORT`` on stdout when ready; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import socket
import sys

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

conns: dict[str, set[WebSocket]] = {}
HELLO = '{"type":"hello"}'


async def ws_endpoint(ws: WebSocket) -> None:
    user = ws.query_params.get("user", "")
    await ws.accept()
    socks = conns.setdefault(user, set())
    socks.add(ws)
    try:
        await ws.send_text(HELLO)
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
    except WebSocketDisconnect:
        pass
    finally:
        socks.discard(ws)
        if not socks and conns.get(user) is socks:
            del conns[user]


async def _write(sockets: list[WebSocket], text: str) -> int:
    n = 0
    for ws in sockets:
        try:
            await ws.send_text(text)
            n += 1
        except Exception:  # closed meanwhile
            pass
    return n


def _json(obj: object) -> Response:
    return Response(orjson.dumps(obj), media_type="application/json")


async def send(request: Request) -> Response:
    req = orjson.loads(await request.body())
    text = orjson.dumps(req["body"]).decode()
    users = req["users"] if "users" in req else [req["user"]]  # S3: many users at once
    n = await _write([ws for u in users for ws in conns.get(u, ())], text)
    return _json({"sessions": n})


async def broadcast(request: Request) -> Response:
    req = orjson.loads(await request.body())
    text = orjson.dumps(req["body"]).decode()
    n = await _write([ws for socks in conns.values() for ws in socks], text)
    return _json({"sessions": n})


app = Starlette(routes=[
    WebSocketRoute("/ws", ws_endpoint),
    Route("/send", send, methods=["POST"]),
    Route("/broadcast", broadcast, methods=["POST"]),
])


class _Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.servers and not self.should_exit:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            print(f"BASELINE_LISTENING http://{host}:{port}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(4096)
    sock.set_inheritable(True)
    config = uvicorn.Config(
        app, loop="uvloop", http="httptools", ws="websockets-sansio",
        ws_per_message_deflate=False, ws_ping_interval=20.0, ws_ping_timeout=20.0,
        timeout_keep_alive=75, lifespan="off", log_config=None, log_level="warning", access_log=False,
        timeout_graceful_shutdown=1, backlog=4096,
    )
    _Server(config).run(sockets=[sock])
    sys.exit(0)


if __name__ == "__main__":
    main()
