"""pushgate.hub.wheel: one task visits every member once per period."""

from __future__ import annotations

from pushgate.hub.wheel import TimerWheel
from tests.support.waiting import wait_for


class Member:
    def __init__(self, fail: bool = False) -> None:
        self.slot = -1
        self.visits = 0
        self.fail = fail

    def tick(self, now_mono: float, now: float) -> None:
        self.visits += 1
        if self.fail:
            raise RuntimeError("boom")


async def test_each_member_is_visited_once_per_period_and_a_failure_stops_nobody() -> None:
    wheel: TimerWheel[Member] = TimerWheel(0.2, slots=4)
    members = [Member(fail=i == 0) for i in range(10)]
    for m in members:
        wheel.add(m)
    assert len(wheel) == 10 and {m.slot for m in members} == {0, 1, 2, 3}
    gone = Member()
    wheel.add(gone)
    wheel.discard(gone)
    assert gone.slot == -1 and len(wheel) == 10
    wheel.start()
    try:
        await wait_for(lambda: min(m.visits for m in members), 5, "three periods",
                       until=lambda n: n >= 3)
        # about once per period: after ≥ 3 visits of the slowest, none has more than 5
        assert max(m.visits for m in members) <= 5
        assert gone.visits == 0
    finally:
        await wheel.stop()
