"""The real ``pushgate serve`` and ``pushgate bridge`` processes, for the tests.

Both run as :class:`deploy.local.processes.Child` (the launcher's process wrapper: own
process group, output in a log file, announcement lines). ``serve`` binds port 0 and
announces ``PUSHGATE_LISTENING http://host:port``; a restart keeps the port, so clients
reconnect to the same URL.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from deploy.local.cluster import LISTENING, base_env, client_token, pushgate_bin
from deploy.local.processes import Child
from tests.support.api import api

START_TIMEOUT = 30.0
BRIDGE_READY = "PUSHGATE_BRIDGE_READY "


def server_env(**extra: str) -> dict[str, str]:
    """The environment without the caller's ``PUSHGATE_*``, with fresh secrets."""
    env = base_env()
    env.update({
        "PUSHGATE_JWT_SECRET": secrets.token_urlsafe(32),
        "PUSHGATE_API_KEYS": "test-key-" + secrets.token_hex(8),
        "PUSHGATE_LOG_LEVEL": "warning",
        "PUSHGATE_SHUTDOWN_GRACE_S": "5",
    })
    env.update(extra)
    return env


@dataclass
class ServerProcess:
    """One ``pushgate serve`` (the README's command, plus test options); its output
    (stdout and stderr) goes to ``<data_dir>.log``."""

    data_dir: Path
    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    port: int = 0
    child: Child | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    @property
    def api_key(self) -> str:
        return self.env["PUSHGATE_API_KEYS"]

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None else None

    @property
    def log_path(self) -> Path:
        return self.data_dir.with_name(f"{self.data_dir.name}.log")

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start on port 0 the first time, on the same port after a stop."""
        cmd = [pushgate_bin(), "serve", "--port", str(self.port), "--data-dir",
               str(self.data_dir), *self.args]
        self.child = Child("pushgate", cmd, self.log_path, env=self.env)
        self.child.start()
        url = self.child.wait_line(LISTENING, timeout)
        self.port = int(url.rsplit(":", 1)[1])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Stop the process (SIGTERM = graceful) and return its exit code."""
        if self.child is None:
            return 0
        code = self.child.stop(sig, timeout)
        self.child = None
        return code or 0

    def log_text(self) -> str:
        return _read(self.log_path)

    def token(self, user: str, *, ttl: float = 600, **claims: Any) -> str:
        return client_token(self.env["PUSHGATE_JWT_SECRET"], user, ttl=ttl, **claims)

    def http(self) -> httpx.AsyncClient:
        return api(self)


@contextlib.contextmanager
def running_server(tmp_path: Path, *args: str, **env: str) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "data", server_env(**env), list(args))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


class BridgeProcess:
    """One ``pushgate bridge`` worker; :attr:`metrics_port` is announced when started
    with ``--metrics-port 0``."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.env, self.log_path, self.args = env, log_path, list(args)
        self.child: Child | None = None
        self.metrics_port: int | None = None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        self.child = Child("bridge", [pushgate_bin(), "bridge", *self.args], self.log_path,
                           env=self.env)
        self.child.start()
        ready = self.child.wait_line(BRIDGE_READY, timeout)
        port = ready.rsplit("metrics_port=", 1)[1]
        self.metrics_port = int(port) if port.isdigit() else None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.child is not None:
            self.child.stop(sig, 20)
            self.child = None

    def log_text(self) -> str:
        return _read(self.log_path)


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
