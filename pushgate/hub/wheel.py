"""One timer wheel for every connection's clocks: keepalive pings, pong timeouts, idle
timeouts, token expiry, the write deadline and the close grace.

No timer per connection: members are spread over ``slots`` buckets and one task visits
one bucket per tick, so every member is visited once per ``period`` seconds and a
check fires at most one period late. With 100,000 sessions and a 5 s period that is
20,000 visits a second, each a few attribute reads (docs/design-notes.md §12).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Generic, Protocol, TypeVar

from pushgate.logs import get_logger
from pushgate.tasks import cancel_and_wait

log = get_logger("pushgate.hub.wheel")


class Member(Protocol):
    slot: int  # the member's bucket; -1 when not on the wheel

    def tick(self, now_mono: float, now: float) -> None:
        """The member's checks (``now_mono``: time.monotonic(), ``now``: time.time())."""


M = TypeVar("M", bound=Member)


class TimerWheel(Generic[M]):
    def __init__(self, period_s: float, slots: int = 10) -> None:
        self.period_s = period_s
        self.tick_s = period_s / slots
        self._slots: list[set[M]] = [set() for _ in range(slots)]
        self._next = itertools.cycle(range(slots))
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return sum(len(s) for s in self._slots)

    def add(self, member: M) -> None:
        member.slot = next(self._next)
        self._slots[member.slot].add(member)

    def discard(self, member: M) -> None:
        if member.slot >= 0:
            self._slots[member.slot].discard(member)
            member.slot = -1

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        for slot in itertools.cycle(self._slots):
            due += self.tick_s
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not slot:
                continue
            now_mono, now = time.monotonic(), time.time()
            for member in list(slot):
                try:
                    member.tick(now_mono, now)
                except Exception:  # one member's failure must not stop everyone's clocks
                    log.exception("timer wheel visit failed")
