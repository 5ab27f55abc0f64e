"""The Leases contract (pushgate.store.base), run on every backend of conftest.py."""

from __future__ import annotations

import asyncio

import pytest

from pushgate.store import SqlEventStore

from .conftest import FakeClock, StoreFactory


async def test_lease_has_one_holder_at_a_time(make_store: StoreFactory, clock: FakeClock) -> None:
    one, two = await make_store(), await make_store()

    assert await one.acquire_lease("cleanup", "h1", 30)
    assert not await two.acquire_lease("cleanup", "h2", 30)
    clock.advance(20)
    assert await one.acquire_lease("cleanup", "h1", 30)  # renewed until now + 30
    clock.advance(29)
    assert not await two.acquire_lease("cleanup", "h2", 30)
    clock.advance(1)  # expired: expires_at == now
    assert await two.acquire_lease("cleanup", "h2", 30)
    assert not await one.acquire_lease("cleanup", "h1", 30)
    assert await one.acquire_lease("other", "h1", 30)  # names are independent

    assert not await one.release_lease("cleanup", "h1")  # not the holder: no effect
    assert await two.release_lease("cleanup", "h2")
    assert await one.acquire_lease("cleanup", "h1", 30)


async def test_lease_race_has_one_winner(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(4)]
    for name in ("first", "second"):
        won = await asyncio.gather(
            *(s.acquire_lease(name, f"h{i}", 30) for i, s in enumerate(stores))
        )
        assert sorted(won) == [False, False, False, True]


async def test_lease_arguments_are_checked(store: SqlEventStore) -> None:
    with pytest.raises(ValueError, match="name"):
        await store.acquire_lease("", "h", 30)
    with pytest.raises(ValueError, match="holder"):
        await store.acquire_lease("n", "x" * 256, 30)
    with pytest.raises(ValueError, match="ttl_s"):
        await store.acquire_lease("n", "h", 0)
