"""Integration fixtures: the real ``pushgate serve`` process on port 0 (see
``tests/support/server.py``), real clients (``tests/support/ws.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProcess, running_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path) as srv:
        yield srv
