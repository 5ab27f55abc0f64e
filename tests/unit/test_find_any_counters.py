"""find_any's round-robin position is kept per filter (pushgate/router/core.py): a
sender that makes a filter per account or device must not grow the router's memory
for ever (~300 bytes a filter were never freed), so only the ANY_COUNTERS_MAX used
last are kept; a filter in use keeps its place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pushgate.hub.app import create_app
from pushgate.hub.node import HubNode
from pushgate.router import core
from pushgate.router.requests import parse_send
from pushgate.settings import Settings


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[HubNode]:
    app = create_app(Settings(data_dir=tmp_path, jwt_secret="s" * 32, api_keys=["k" * 32]))
    gw: HubNode = app.state.node
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def test_find_any_positions_are_bounded_and_the_busy_filter_keeps_its_place(
        node: HubNode, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "ANY_COUNTERS_MAX", 3)
    router = node.router
    assert isinstance(router, core.Router)

    async def find_any(account: str) -> None:
        await router.send(parse_send({"filter": {"account": account, "find_any": True},
                                      "body": 1}, node.send_limits))

    for i in range(50):
        await find_any("busy")
        await find_any(f"one-off-{i}")
    counters = router._any_counters  # (the router's own bookkeeping)
    assert len(counters) == 3
    assert [v for k, v in counters.items() if "busy" in str(k)] == [50]
