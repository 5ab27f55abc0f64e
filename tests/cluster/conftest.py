"""Cluster tests: the local cluster launcher (deploy/local) with real nginx, Redis and
MariaDB, and the deployment files (deploy/).

Tests marked ``needs_router`` use ``pushgate router``. Where that command does not
exist yet they are skipped with the reason -- except in CI (``CI=true``), where a
missing router fails them: the cluster must be tested there.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from deploy.local.cluster import LocalCluster, pushgate_bin
from tests import services

TIMEOUT = 15.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_router: uses `pushgate router` (cluster mode)")


@functools.cache
def router_missing() -> str | None:
    """Why ``pushgate router`` cannot run here, or ``None`` when it can."""
    try:
        proc = subprocess.run([pushgate_bin(), "router", "--help"], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`pushgate router --help` failed: {exc}"
    if proc.returncode != 0:
        return (f"`pushgate router --help` exited {proc.returncode}: "
                f"{(proc.stderr or proc.stdout).strip()[-300:]}")
    return None


@pytest.fixture(autouse=True)
def _router_gate(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("needs_router") is None:
        return
    reason = router_missing()
    if reason is None:
        return
    if services.in_ci():
        pytest.fail(f"cluster tests need `pushgate router` in CI: {reason}")
    pytest.skip(f"no `pushgate router` yet: {reason}")


@pytest.fixture(scope="session")
def cluster_binaries() -> None:
    """nginx and redis-server, installed (as root) when missing."""
    try:
        services.provision_nginx()
        services.provision_redis_server()
    except services.ServiceUnavailable as exc:
        if services.in_ci():
            pytest.fail(f"cluster tests cannot run in CI: {exc}")
        pytest.skip(f"cluster tests cannot run: {exc}")


@pytest.fixture(scope="module")
def embedded_cluster(cluster_binaries: None, mysql_server: str,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Two embedded hubs (no routers) sharing a MariaDB database, behind private nginx."""
    with LocalCluster(hubs=2, routers=0, workdir=tmp_path_factory.mktemp("cluster"),
                      mysql_url=mysql_server) as c:
        yield c


def make_cluster(tmp_path: Path, mysql_server: str, **kw: object) -> LocalCluster:
    return LocalCluster(workdir=tmp_path / "cluster", mysql_url=mysql_server, **kw)  # type: ignore[arg-type]


# -- clients -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def ws(c: LocalCluster, user: str) -> AsyncIterator[ClientConnection]:
    async with connect(f"{c.ws_url}?token={c.token(user)}", open_timeout=10,
                       close_timeout=2) as conn:
        yield conn


async def recv_type(conn: ClientConnection, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        while True:
            frame: dict[str, Any] = orjson.loads(await conn.recv())
            if frame["type"] == kind:
                return frame


def api(c: LocalCluster) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=c.url, timeout=TIMEOUT,
                             headers={"Authorization": f"Bearer {c.api_key}"})


async def until(check: Any, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def sessions(c: LocalCluster) -> list[int | None]:
    return [c.hub_sessions(i) for i in range(c.n_hubs)]
