"""Integration fixtures: the real ``pushgate serve`` process on port 0, real clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

START_TIMEOUT = 30.0
FRAME_TIMEOUT = 10.0


def pushgate_bin() -> str:
    exe = Path(sys.executable).parent / "pushgate"
    return str(exe) if exe.exists() else shutil.which("pushgate") or "pushgate"


@dataclass
class ServerProcess:
    """One ``pushgate serve`` child process (the README's command, plus test options)."""

    data_dir: Path
    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None
    port: int = 0
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    output: list[str] = field(default_factory=list)
    pump: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    @property
    def api_key(self) -> str:
        return self.env["PUSHGATE_API_KEYS"]

    def start(self) -> None:
        cmd = [pushgate_bin(), "serve", "--port", str(self.port), "--data-dir",
               str(self.data_dir), *self.args]
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines = queue.Queue()
        self.pump = threading.Thread(target=self._pump, args=(self.proc,), daemon=True)
        self.pump.start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RuntimeError("pushgate did not start:\n" + "".join(self.output)) from None
            if line.startswith("PUSHGATE_LISTENING "):
                self.port = int(line.rsplit(":", 1)[1])
                return
            if line == "":  # EOF: the process died
                raise RuntimeError("pushgate exited:\n" + "".join(self.output))

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line)
            self.lines.put(line.strip())
        self.lines.put("")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Stop the process (SIGTERM = graceful) and return its exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(5)
        if self.pump is not None:
            self.pump.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
        return code

    def token(self, user: str, *, ttl: float = 600, **claims: Any) -> str:
        payload = {"sub": user, "exp": int(time.time() + ttl), **claims}
        return jwt.encode(payload, self.env["PUSHGATE_JWT_SECRET"], algorithm="HS256")

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=15,
                                 headers={"Authorization": f"Bearer {self.api_key}"})


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHGATE_")}
    env.update({
        "PUSHGATE_JWT_SECRET": secrets.token_urlsafe(32),
        "PUSHGATE_API_KEYS": "test-key-" + secrets.token_hex(8),
        "PUSHGATE_LOG_LEVEL": "warning",
        "PUSHGATE_SHUTDOWN_GRACE_S": "5",
    })
    env.update(extra)
    return env


@contextlib.contextmanager
def running_server(tmp_path: Path, *args: str, **env: str) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "data", server_env(**env), list(args))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path) as srv:
        yield srv


class Client:
    """A real websocket client with helpers that wait on frames with a timeout."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.hello: dict[str, Any] = {}

    async def recv(self, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        return orjson.loads(raw)  # type: ignore[no-any-return]

    async def recv_type(self, kind: str, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.recv(max(0.01, deadline - time.monotonic()))
            if frame["type"] == kind:
                return frame

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(frame).decode())

    async def request(self, frame: dict[str, Any], timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
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
async def ws_client(srv: ServerProcess, user: str = "", *, token: str | None = None,
                    after: int | None = None, expect_hello: bool = True,
                    origin: str | None = None, max_queue: int | None = 16,
                    **claims: Any) -> AsyncIterator[Client]:
    """Connect as ``user``; extra keyword arguments become token claims (ws, dev, app)."""
    url = f"{srv.ws_url}?token={token if token is not None else srv.token(user, **claims)}"
    if after is not None:
        url += f"&after={after}"
    async with connect(url, open_timeout=10, close_timeout=5, origin=origin,
                       max_queue=max_queue) as ws:  # type: ignore[arg-type]
        client = Client(ws)
        if expect_hello:
            client.hello = await client.recv_type("hello")
        yield client
