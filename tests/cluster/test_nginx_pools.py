"""The shipped nginx keeps sends on hub connections of their own (deploy/nginx/pushgate.conf,
docs/deploy.md "nginx"): an upstream connection that carries ``POST /v1/notifications``
carries nothing else, so the hub answers it on its send connection, head and body in one
write, and a hub killed mid-reply leaves nginx a missing reply (its JSON 502), never a head
without its body. A real nginx, rendered by the local launcher, in front of a recording
upstream that sees which requests share a connection."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from pathlib import Path

import httpx

from deploy.local.nginx import PrivateNginx

SEND = ("POST", "/v1/notifications")


class RecordingUpstream:
    """A keep-alive HTTP/1.1 server: every request answered ``200 {}``, recorded as
    (method, path) under the number of the connection it came on."""

    def __init__(self) -> None:
        self.requests: dict[int, list[tuple[str, str]]] = defaultdict(list)
        self._ids = itertools.count()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = next(self._ids)
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                length = next((int(v) for k, _, v in (line.partition(":") for line in lines[1:])
                               if k.strip().lower() == "content-length"), 0)
                await reader.readexactly(length)
                self.requests[conn].append((method, target.partition("?")[0]))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def client_mix(url: str, k: int) -> None:
    """One client connection to nginx, sends between the API's other requests (what a
    business server does: look up sessions, send, read a report)."""
    async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=1)) as http:
        for i in range(10):
            for method, path in (("GET", f"/v1/users/u{k}/sessions"), SEND,
                                 ("GET", "/v1/notifications"), SEND,
                                 ("POST", f"/v1/users/u{k}/read"), SEND):
                r = await http.request(method, path, json={"i": i} if method == "POST" else None)
                assert r.status_code == 200, (method, path, r.status_code, r.text)


async def test_sends_ride_upstream_connections_of_their_own(cluster_binaries: None,
                                                            tmp_path: Path) -> None:
    upstream = RecordingUpstream()
    nginx = PrivateNginx(tmp_path / "nginx", [await upstream.start()], access_log=False)
    await asyncio.to_thread(nginx.start)
    try:
        await asyncio.gather(*(client_mix(nginx.url, k) for k in range(4)))
    finally:
        await asyncio.to_thread(nginx.stop)
        await upstream.stop()

    conns = list(upstream.requests.values())
    assert sum(len(c) for c in conns) == 4 * 10 * 6  # every request reached the upstream
    send_conns = [c for c in conns if SEND in c]
    other_conns = [c for c in conns if SEND not in c]
    mixed = [c for c in send_conns if set(c) != {SEND}]
    assert mixed == [], mixed[:3]
    assert sum(len(c) for c in send_conns) == 4 * 10 * 3
    # both pools keep their connections alive (not a fresh connection per request)
    assert max(len(c) for c in send_conns) >= 2, [len(c) for c in send_conns]
    assert max(len(c) for c in other_conns) >= 2, [len(c) for c in other_conns]
    # GET /v1/notifications (the reports' list) is not a send: it goes with the rest
    assert any(("GET", "/v1/notifications") in c for c in other_conns)
