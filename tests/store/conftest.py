"""MySQL/MariaDB-specific store tests: every test here needs a real server."""

from __future__ import annotations

import pytest

from tests import services


@pytest.fixture
def mysql_db(mysql_run_db: str) -> str:
    """This run's migrated database, emptied for the test."""
    services.empty_tables(mysql_run_db)
    return mysql_run_db
