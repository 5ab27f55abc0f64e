"""Stopping background tasks for sure.

``task.cancel(); await task`` hangs for ever when the cancellation is swallowed: a
cancel that lands while the task is inside a database driver (seen with SQLAlchemy's
async engine over asyncmy: the flush it interrupted finished and returned normally) is
lost, and a ``while True`` loop then waits for its next round with nobody left to wake
it — a router stopped with SIGTERM never exited. :func:`cancel_and_wait` cancels again
until the task is done (the next cancel lands in a sleep or a wait, which do not
swallow it), and gives up after a deadline so that a shutdown always ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

RETRY_S = 0.05


async def cancel_and_wait(task: asyncio.Task[Any] | None, timeout_s: float = 5.0) -> bool:
    """Cancel ``task`` and wait until it is done, cancelling again every
    ``RETRY_S`` while it is not; ``False`` if it still runs after ``timeout_s``. Never
    raises the task's exception (it is retrieved, so asyncio does not log it)."""
    if task is None:
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not task.done():
        task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        await asyncio.wait({task}, timeout=min(RETRY_S, remaining))
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.exception()
    return True
