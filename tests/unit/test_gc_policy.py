"""The gateway's GC policy (:func:`pushgate.server.gc_policy`): long-lived objects are
frozen out of the collector's sight, but the cyclic garbage of each interval (a closed
connection's objects) is reclaimed at that interval's end, not frozen with the rest
until the next full collection (under connect/disconnect churn that held ~1.5 KB per
connection, hundreds of MB)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from pushgate.server import gc_policy
from tests.support.waiting import wait_for


class Cyclic:
    def __init__(self) -> None:
        self.me = self  # freed only by the cyclic collector


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    gc.collect()


@pytest.mark.usefixtures("restore_gc")
async def test_the_cyclic_garbage_of_an_interval_is_reclaimed_not_frozen() -> None:
    policy = asyncio.create_task(gc_policy(0.05, full_every=1_000_000))
    try:
        await asyncio.sleep(0)  # the policy's first freeze
        garbage = Cyclic()
        gone = weakref.ref(garbage)
        del garbage  # unreachable now, but in a cycle
        frozen_before = gc.get_freeze_count()
        await wait_for(lambda: gc.get_freeze_count() != frozen_before, 5, "a freeze")
        assert gone() is None, "an interval's cyclic garbage was frozen, not reclaimed"
    finally:
        policy.cancel()
