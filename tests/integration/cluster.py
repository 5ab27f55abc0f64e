"""A cluster of real processes for the cluster tests: ``pushgate router`` x M and
``pushgate serve --routers …`` x N, sharing Redis (a key prefix of the test's own, or
a private redis-server) and a store (this run's MariaDB database, or SQLite).

(``deploy/local/cluster.py`` adds nginx in front; these tests talk to hubs directly.)
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.integration.conftest import START_TIMEOUT, ServerProcess, pushgate_bin, server_env


@dataclass
class RouterProcess:
    env: dict[str, str]
    listen: str = "127.0.0.1:0"
    proc: subprocess.Popen[str] | None = None
    address: str = ""
    output: list[str] = field(default_factory=list)
    _pump: threading.Thread | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([pushgate_bin(), "router", "--router-listen", self.listen],
                                     env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        lines: queue.Queue[str] = queue.Queue()

        def pump(proc: subprocess.Popen[str]) -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.output.append(line)
                lines.put(line.strip())
            lines.put("")

        self._pump = threading.Thread(target=pump, args=(self.proc,), daemon=True)
        self._pump.start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RuntimeError("router did not start:\n" + "".join(self.output)) from None
            if line.startswith("PUSHGATE_ROUTER_LISTENING "):
                self.address = line.split(" ", 1)[1]
                self.listen = self.address  # a restart keeps the address hubs know
                return
            if line == "":
                raise RuntimeError("router exited:\n" + "".join(self.output))

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self._pump is not None:
            self._pump.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


@dataclass
class Cluster:
    base: Path
    env: dict[str, str]
    routers: list[RouterProcess] = field(default_factory=list)
    hubs: list[ServerProcess] = field(default_factory=list)

    def add_router(self) -> RouterProcess:
        r = RouterProcess(dict(self.env))
        r.start()
        self.routers.append(r)
        return r

    def add_hub(self) -> ServerProcess:
        env = dict(self.env, PUSHGATE_ROUTERS=",".join(r.address for r in self.routers))
        hub = ServerProcess(self.base / f"hub{len(self.hubs)}", env)
        hub.start()
        self.hubs.append(hub)
        wait_ready(hub)
        return hub

    def stop(self) -> None:
        for h in self.hubs:
            h.stop()
        for r in self.routers:
            r.stop()


def wait_ready(hub: ServerProcess, timeout: float = 20.0) -> None:
    """Until the hub's /readyz says it is linked to a router."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{hub.base_url}/readyz", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"hub {hub.base_url} not ready:\n" + "".join(hub.output[-20:]))
        time.sleep(0.05)


@contextlib.contextmanager
def running_cluster(base: Path, *, store_url: str, redis_url: str, prefix: str, hubs: int = 2,
                    routers: int = 1, **env: str) -> Iterator[Cluster]:
    cluster = Cluster(base, server_env(
        PUSHGATE_STORE_URL=store_url, PUSHGATE_DIRECTORY_URL=redis_url,
        PUSHGATE_DIRECTORY_PREFIX=prefix, PUSHGATE_HUB_HEARTBEAT_TTL_S="2",
        PUSHGATE_DATA_DIR=str(base / "router-data"), **env))
    try:
        for _ in range(routers):
            cluster.add_router()
        for _ in range(hubs):
            cluster.add_hub()
        yield cluster
    finally:
        cluster.stop()
