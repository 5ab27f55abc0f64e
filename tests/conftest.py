"""Session-wide test services, provisioned on first use (see ``tests/services.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pushgate.store import migrate
from tests import services


@pytest.fixture(scope="session")
def mysql_server() -> str:
    """URL (no database) of a MariaDB/MySQL server. Without one, the test is skipped with
    the reason, except in CI (``CI=true``) where it fails: MySQL must be tested there."""
    try:
        return services.provision_mysql()
    except services.ServiceUnavailable as exc:
        if services.in_ci():
            pytest.fail(f"MySQL tests cannot run in CI: {exc}")
        pytest.skip(f"no MariaDB/MySQL: {exc}")


@pytest.fixture(scope="session")
def mysql_run_db(mysql_server: str) -> Iterator[str]:
    """URL of this test run's own database, created and migrated now, dropped at the end.
    Tests on it start with ``services.empty_tables(url)``."""
    with services.mysql_database(mysql_server) as url:
        services.run_sync(migrate(url))
        yield url
