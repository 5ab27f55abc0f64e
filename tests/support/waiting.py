"""Waiting on a condition with a deadline: the one polling helper of the tests.

``check`` is called every ``interval`` seconds until ``until(value)`` holds (by default:
until the value is truthy), and that value is returned. ``check`` may be a plain
function or return an awaitable (an ``async def``, or ``asyncio.to_thread(...)`` for a
blocking call). On timeout an :class:`AssertionError` names ``what`` and the last value
seen, so a failure says what did not happen and how far it got::

    await wait_for(lambda: session_count(hub, "carol"), 10, "carol's 5 sessions",
                   until=lambda n: n == 5)
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
INTERVAL = 0.05


def _timed_out(what: str, timeout: float, value: Any) -> AssertionError:
    return AssertionError(f"timed out after {timeout:g} s waiting for {what} "
                          f"(last value: {value!r})")


async def wait_for(check: Callable[[], T | Awaitable[T]], timeout: float = 10.0,
                   what: str = "the condition", *, until: Callable[[T], object] = bool,
                   interval: float = INTERVAL) -> T:
    """Poll ``check`` until ``until(value)``; return the value (see the module doc)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if until(value):  # type: ignore[arg-type]
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, value)
        await asyncio.sleep(interval)


def wait_for_sync(check: Callable[[], T], timeout: float = 10.0, what: str = "the condition",
                  *, until: Callable[[T], object] = bool, interval: float = INTERVAL) -> T:
    """:func:`wait_for` for code without an event loop (fixtures, service set-up)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, value)
        time.sleep(interval)
