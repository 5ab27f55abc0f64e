"""Microbenchmark of the hub's HTTP side per request, in-process on uvloop: the protocol
class of ``pushgate.hub.guard`` (and what it hands over to) driven over a fake
transport, without sockets and without the router's work (``node.router.send`` and
``node.router.connect`` answer at once), so what is left is the HTTP layer, the send
route's steps (API key, JSON, ``parse_send``) and the websocket handshake.

    .venv/bin/python -m bench.guard_micro [--ref DIR] [--rounds 5]

- **send**: ``POST /v1/notifications`` (~100-byte body) on one keep-alive connection,
  head to reply;
- **get**: ``GET /healthz`` on one keep-alive connection (uvicorn's path);
- **upgrade**: a websocket upgrade as a connection's first request: connection made,
  head parsed, ``101`` written, the session refused at once (an invalid token: no
  session work) and the connection lost.

Each figure is the CPU time (``time.process_time``) per request, the minimum over
``--rounds`` rounds (the machine may be shared: the minimum is the least disturbed).
``--ref DIR`` runs the same in another source tree (a ``git worktree`` of another
commit, e.g. the one before a change) in a child process, alternating with this one.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KEY = "k" * 24
SECRET = "s" * 32


class _Transport(asyncio.Transport):
    """Counts the replies written (a reply ends with its body, or the 101's blank line)."""

    def __init__(self) -> None:
        super().__init__()
        self.protocol: Any = None
        self.replies = 0
        self.closed = False
        self.waiter: asyncio.Future[None] | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default)

    def write(self, data: Any) -> None:
        if not data.endswith(b"\r\n"):
            self.replies += 1
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def measure(rounds: int) -> dict[str, float]:
    import orjson
    import uvicorn
    from uvicorn.server import ServerState

    from pushgate.hub.app import create_app
    from pushgate.hub.connection import connection_class
    from pushgate.hub.fastpath import FastSend
    from pushgate.hub.guard import guarded_http
    from pushgate.router.base import SendResult, UserResult
    from pushgate.settings import Settings

    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="guard-micro-")),
                        jwt_secret=SECRET, api_keys=[KEY], max_connections_per_ip=0,
                        connect_rate_per_ip=0, log_level="warning")
    app = create_app(settings)
    node = app.state.node
    await node.start()

    async def send(request: Any) -> SendResult:
        return SendResult([UserResult(user="u", seq=1, sessions=0)], 0)

    node.router.send = send
    ws = connection_class(node)
    cls: Any = (guarded_http(node, ws)  # type: ignore[call-arg]
                if len(inspect.signature(guarded_http).parameters) == 2
                else guarded_http(node))  # type: ignore[call-arg]
    config = uvicorn.Config(FastSend(app, node), ws=ws, log_config=None, access_log=False)
    config.load()
    state = ServerState()
    body = orjson.dumps({"users": ["u"], "body": {"i": "m1", "t": 1.0, "kind": "bench",
                                                  "p": "x" * 40}})
    post = (b"POST /v1/notifications HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: "
            b"Bearer " + KEY.encode() + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)
    get = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
    upgrade = (b"GET /v1/ws?token=x HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n")

    def connect() -> tuple[Any, _Transport]:
        transport = _Transport()
        protocol = cls(config=config, server_state=state, app_state={})
        transport.protocol = protocol
        protocol.connection_made(transport)
        return protocol, transport

    async def keep_alive(request: bytes, n: int) -> None:
        protocol, transport = connect()
        loop = asyncio.get_running_loop()
        for i in range(n):
            transport.waiter = loop.create_future()
            protocol.data_received(request)
            if transport.replies <= i:
                await transport.waiter
        protocol.connection_lost(None)

    async def upgrades(n: int) -> None:
        for _ in range(n):
            guard, transport = connect()
            guard.data_received(upgrade)
            transport.protocol.connection_lost(None)  # the websocket class's
        await asyncio.sleep(0)

    async def best(run: Any, n: int) -> float:
        await run(n // 10)  # warm-up
        times = []
        for _ in range(rounds):
            started = time.process_time()
            await run(n)
            times.append((time.process_time() - started) / n * 1e6)
        return min(times)

    try:
        return {"send": await best(lambda n: keep_alive(post, n), 20000),
                "get": await best(lambda n: keep_alive(get, n), 20000),
                "upgrade": await best(upgrades, 5000)}
    finally:
        await node.stop()


def _child(source: Path, rounds: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(source)}
    # this file, on that tree's pushgate (PYTHONPATH comes before the venv's install)
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--json",
                          "--rounds", str(rounds)], cwd=source, env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", type=Path, help="another source tree to compare with")
    ap.add_argument("--tree", type=Path, default=ROOT, help="the source tree measured "
                    "(default: this checkout)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3, help="alternations with --ref")
    ap.add_argument("--json", action="store_true", help="one JSON line (for --ref)")
    args = ap.parse_args()
    if args.json:
        import uvloop

        print(json.dumps(uvloop.run(measure(args.rounds))))
        return
    trees = [("this", args.tree.resolve())] + ([("ref", args.ref.resolve())] if args.ref
                                               else [])
    seen: dict[str, list[dict[str, float]]] = {name: [] for name, _ in trees}
    for _ in range(args.repeat if args.ref else 1):
        for name, source in trees:
            seen[name].append(_child(source, args.rounds))
    print(f"{'µs CPU per request':<20}" + "".join(f"{name:>10}" for name, _ in trees)
          + ("   this/ref" if args.ref else ""))
    for what in ("send", "get", "upgrade"):
        figures = [min(r[what] for r in seen[name]) for name, _ in trees]
        ratio = f"{figures[0] / figures[1]:>11.2f}" if args.ref else ""
        print(f"{what:<20}" + "".join(f"{f:>10.1f}" for f in figures) + ratio)


if __name__ == "__main__":
    main()
