"""The admin dashboard's tests: a real ``pushgate serve`` with an ``admin_key``, real
Chromium for the page (tests/support/browser.py)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.admin import admin_login
from tests.support.server import ServerProcess, running_server

ADMIN_KEY = "admin-" + secrets.token_hex(12)


@pytest.fixture
def admin_server(tmp_path: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path, PUSHGATE_ADMIN_KEY=ADMIN_KEY) as srv:
        yield srv


async def login(http: httpx.AsyncClient, key: str = ADMIN_KEY) -> httpx.Response:
    return await admin_login(http, key)
