"""Cluster tests: real hubs, routers, Redis and MariaDB started by the local cluster
launcher (``deploy/local``, :class:`LocalCluster`).

Tests of cluster behaviour talk to the hubs directly (``nginx=False``, the session's
Redis with a key prefix of the test's own, this run's MariaDB database): starting is
faster and nothing between client and hub can hide a bug. Only the tests of nginx and
of the launcher itself (``test_launcher.py``, ``test_deploy_files.py``) run nginx.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.local.cluster import LocalCluster
from tests import services

# a dead hub's sessions leave the directory within ~2 s; a lost Redis is noticed in ~0.7 s
LIVENESS = {"PUSHGATE_HUB_HEARTBEAT_TTL_S": "2"}


@pytest.fixture(scope="session")
def cluster_binaries() -> None:
    """nginx and redis-server, installed (as root) when missing."""
    services.require("cluster tests", services.provision_nginx)
    services.require("cluster tests", services.provision_redis_server)


@pytest.fixture
def store_url(mysql_run_db: str) -> str:
    """This run's database (migrated), emptied for the test."""
    services.empty_tables(mysql_run_db)
    return mysql_run_db


@pytest.fixture
def shared(store_url: str, redis_server: str, redis_prefix: str) -> dict[str, Any]:
    """LocalCluster arguments for the session's Redis (the test's prefix) and store."""
    return {"store_url": store_url, "migrate": False, "redis_url": redis_server,
            "redis_prefix": redis_prefix}


def direct_cluster(tmp_path: Path, shared: dict[str, Any], **kw: Any) -> LocalCluster:
    """Hubs and routers without nginx, on the shared Redis and store; a hub that dies is
    noticed within the liveness window (:data:`LIVENESS`)."""
    options: dict[str, Any] = {"hubs": 2, "routers": 1, "nginx": False, "hub_env": LIVENESS,
                               "router_env": LIVENESS, **shared, **kw}
    return LocalCluster(workdir=tmp_path / "cluster", **options)


@contextlib.asynccontextmanager
async def started_from_a_thread(cluster: LocalCluster) -> AsyncIterator[LocalCluster]:
    """``cluster`` started and stopped from a thread, so that servers living in the
    test's event loop (the fake APNs/FCM) answer its processes' start-up checks
    (``async with cluster`` blocks the loop while starting: a router with push providers
    waited out both credential checks' timeouts, 20 s)."""
    await asyncio.to_thread(cluster.start)
    try:
        yield cluster
    finally:
        await asyncio.to_thread(cluster.stop)


@pytest.fixture
def cluster(tmp_path: Path, shared: dict[str, Any]) -> Iterator[LocalCluster]:
    """Two hubs and a router, no nginx."""
    with direct_cluster(tmp_path, shared) as c:
        yield c
