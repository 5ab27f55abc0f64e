"""The DeviceStore contract (pushgate.store.base), run on every backend of conftest.py."""

from __future__ import annotations

import pytest

from pushgate.store import Device, SqlEventStore

from .conftest import FakeClock


async def test_devices_register_list_and_remove(store: SqlEventStore, clock: FakeClock) -> None:
    t0 = clock.now
    assert await store.register_device("a", "app1", "apns", "tok1") == Device(
        "a", "app1", "apns", "tok1", t0
    )
    await store.register_device("a", "app2", "fcm", "tok2")
    await store.register_device("b", "app1", "fcm", "tok3")
    clock.advance(5)
    await store.register_device("a", "app1", "apns", "tok1")  # again: refreshed, not doubled

    assert await store.devices(["b", "a", "nobody", "a"]) == [
        Device("a", "app1", "apns", "tok1", t0 + 5),
        Device("a", "app2", "fcm", "tok2", t0),
        Device("b", "app1", "fcm", "tok3", t0),
    ]
    assert await store.devices(["a", "b"], app="app1") == [
        Device("a", "app1", "apns", "tok1", t0 + 5),
        Device("b", "app1", "fcm", "tok3", t0),
    ]
    assert await store.devices([]) == []

    # the device changed account: the token moves; the same string on FCM is another device
    await store.register_device("b", "app1", "apns", "tok1")
    await store.register_device("a", "app1", "fcm", "tok1")
    assert [(d.user, d.platform) for d in await store.devices(["a", "b"]) if d.token == "tok1"] == [
        ("a", "fcm"),
        ("b", "apns"),
    ]
    assert not await store.remove_device("a", "app1", "apns", "tok1")  # b's now
    assert await store.remove_device("b", "app1", "apns", "tok1")
    assert await store.remove_dead_token("fcm", "tok2")
    assert not await store.remove_dead_token("fcm", "tok2")
    assert [(d.user, d.token) for d in await store.devices(["a", "b"])] == [
        ("a", "tok1"),
        ("b", "tok3"),
    ]


async def test_device_arguments_are_checked(store: SqlEventStore) -> None:
    with pytest.raises(ValueError, match="platform"):
        await store.register_device("a", "app", "gcm", "tok")
    with pytest.raises(ValueError, match="token"):
        await store.register_device("a", "app", "fcm", "t\u00f6ken")
    with pytest.raises(ValueError, match="token"):
        await store.remove_dead_token("apns", "x" * 513)
    with pytest.raises(ValueError, match="app"):
        await store.register_device("a", "", "fcm", "tok")
    assert await store.devices(["a"]) == []
