"""Session-wide test services, provisioned on first use (see ``tests/services.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pushgate.store import migrate
from tests import services


@pytest.fixture(scope="session")
def mysql_server() -> str:
    """URL (no database) of a MariaDB/MySQL server. Without one, the test is skipped with
    the reason, except in CI (``CI=true``) where it fails: MySQL must be tested there."""
    return services.require("MySQL tests", services.provision_mysql)


@pytest.fixture(scope="session")
def mysql_run_db(mysql_server: str) -> Iterator[str]:
    """URL of this test run's own database, created and migrated now, dropped at the end.
    Tests on it start with ``services.empty_tables(url)``."""
    with services.mysql_database(mysql_server) as url:
        services.run_sync(migrate(url))
        yield url


@pytest.fixture(scope="session")
def redis_server() -> str:
    """URL of a Redis server (provisioned on first use). Without one the test is skipped
    with the reason, except in CI where it fails: the cluster must be tested there."""
    from tests import redis_service

    return services.require("Redis tests", redis_service.provision_redis)


@pytest.fixture
def redis_prefix(redis_server: str) -> Iterator[str]:
    """A key prefix of this test's own, deleted afterwards."""
    from tests import redis_service

    prefix = redis_service.new_prefix()
    yield prefix
    redis_service.delete_prefix(redis_server, prefix)


@pytest.fixture(scope="session")
def redis_cluster_engine() -> Iterator[Any]:
    """A 3-master 3-replica Redis Cluster of this test run, started on first use and
    stopped at the end (``tests/redis_engines.py``). A test that kills a node heals it."""
    from tests import redis_engines

    engine = services.require("Redis Cluster tests", lambda: redis_engines.start_with_retries(
        redis_engines.RedisClusterEngine))
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture(scope="session")
def redis_sentinel_engine() -> Iterator[Any]:
    """A primary + replica + 3 Sentinels of this test run (``tests/redis_engines.py``)."""
    from tests import redis_engines

    engine = services.require("Redis Sentinel tests", lambda: redis_engines.start_with_retries(
        redis_engines.SentinelEngine))
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture
def redis_cluster_url(redis_cluster_engine: Any) -> str:
    """URL (``redis+cluster://``) of the run's Redis Cluster."""
    return str(redis_cluster_engine.url)


@pytest.fixture
def redis_sentinel_url(redis_sentinel_engine: Any) -> str:
    """URL (``redis+sentinel://``) of the run's Sentinel-managed primary."""
    return str(redis_sentinel_engine.url)
