"""A connection's seqs past a gap (pushgate.hub.session, docs/protocol.md order): held
for the hold time, released when the missing seq arrives, filled from the store when it
does not; skips (events for another device) move the seq on; transient frames are
never held."""

from __future__ import annotations

import asyncio

from pushgate.auth import Identity
from pushgate.errors import CloseCode
from pushgate.hub.session import Session, State
from tests.unit.test_session import Outlet


class Gaps:
    """The gap source as a session sees it: records the fill requests."""

    def __init__(self, hold_s: float = 0.05) -> None:
        self.hold_s = hold_s
        self.asked: asyncio.Queue[Session] = asyncio.Queue()
        self.holds = 0

    def held(self) -> None:
        self.holds += 1

    def request(self, session: Session) -> None:
        self.asked.put_nowait(session)


def open_session(out: Outlet, gaps: Gaps, head: int = 0, max_queue: int = 8) -> Session:
    s = Session(Identity(user="u"), "hub", max_queue, out, gaps=gaps)
    s.open(0, head)
    return s


async def test_a_frame_past_a_gap_waits_for_the_missing_one() -> None:
    out, gaps = Outlet(), Gaps(hold_s=30)
    s = open_session(out, gaps)
    assert s.push("e1", seq=1)
    assert s.push("e3", seq=3)  # 2 is in flight from another router
    assert s.push("e4", seq=4)
    assert out.wire == ["e1"] and s.gap() == (1, 4) and gaps.holds == 1
    assert s.push("e2", seq=2)
    assert out.wire == ["e1", "e2", "e3", "e4"] and s.last_seq == 4
    assert s.gap() is None
    assert not s.push("e3", seq=3)  # a late second copy
    assert out.wire == ["e1", "e2", "e3", "e4"]


async def test_the_missing_seqs_are_fetched_after_the_hold_and_sent_in_order() -> None:
    out, gaps = Outlet(), Gaps(hold_s=0.05)
    s = open_session(out, gaps)
    s.push("e1", seq=1)
    loop = asyncio.get_running_loop()
    t = loop.time()
    s.push("e4", seq=4)
    asked = await asyncio.wait_for(gaps.asked.get(), 5)
    assert asked is s and loop.time() - t >= 0.04
    assert s.gap() == (1, 4)
    s.push("e5", seq=5)  # arrives while the fetch runs: still held behind the gap
    assert out.wire == ["e1"]
    assert s.fill([(3, "e3"), (2, "e2")]) == 0
    assert out.wire == ["e1", "e2", "e3", "e4", "e5"] and s.last_seq == 5
    s.push("e6", seq=6)
    assert out.wire[-1] == "e6"


async def test_seqs_the_store_does_not_have_are_passed_over() -> None:
    out, gaps = Outlet(), Gaps(hold_s=0)
    s = open_session(out, gaps)
    s.push("e1", seq=1)
    s.push("e5", seq=5)
    await asyncio.wait_for(gaps.asked.get(), 5)
    assert s.fill([(3, "e3")]) == 2  # 2 and 4: expired, or the fetch failed
    assert out.wire == ["e1", "e3", "e5"] and s.last_seq == 5


async def test_a_skip_moves_the_seq_on_without_a_frame() -> None:
    out, gaps = Outlet(), Gaps(hold_s=30)
    s = open_session(out, gaps)
    s.push("e1", seq=1)
    assert not s.push("", seq=2)  # seq 2 went to another device of the user
    assert s.push("e3", seq=3)
    assert out.wire == ["e1", "e3"] and gaps.holds == 0
    s.push("e5", seq=5)
    s.push("", seq=4)  # a skip that fills a gap releases what waits behind it
    assert out.wire == ["e1", "e3", "e5"] and s.gap() is None


async def test_transient_frames_are_never_held() -> None:
    out, gaps = Outlet(), Gaps(hold_s=30)
    s = open_session(out, gaps)
    s.push("e1", seq=1)
    s.push("e3", seq=3)
    assert s.push("t", seq=0)
    assert out.wire == ["e1", "t"]


async def test_seqs_up_to_the_head_at_connect_are_not_gaps() -> None:
    out, gaps = Outlet(), Gaps(hold_s=30)
    s = open_session(out, gaps, head=10)  # no backlog: the client fetches up to 10
    assert s.push("e11", seq=11)
    assert out.wire == ["e11"] and gaps.holds == 0


async def test_an_ack_sends_event_below_the_seq_is_still_delivered() -> None:
    out, gaps = Outlet(), Gaps(hold_s=30)
    s = open_session(out, gaps)
    s.push("e1", seq=1)
    s.push("e2", seq=2)
    assert s.push("again1", seq=1, again=True)
    assert out.wire == ["e1", "e2", "again1"]


async def test_too_many_held_frames_fetch_at_once_and_then_close_as_slow() -> None:
    out, gaps = Outlet(), Gaps(hold_s=30)
    s = open_session(out, gaps, max_queue=2)
    s.push("e1", seq=1)
    for seq in (3, 4, 5):  # over max_queue: no waiting for the hold time
        s.push(f"e{seq}", seq=seq)
    assert await asyncio.wait_for(gaps.asked.get(), 5) is s
    for seq in (6, 7):
        s.push(f"e{seq}", seq=seq)
    assert s.state is State.CLOSING and out.close == (CloseCode.SLOW, out.close[1])
    assert s.gap() is None


async def test_a_closing_session_drops_what_it_held() -> None:
    out, gaps = Outlet(), Gaps(hold_s=0)
    s = open_session(out, gaps)
    s.push("e1", seq=1)
    s.push("e3", seq=3)
    s.close(CloseCode.SHUTDOWN, "bye")
    assert s.gap() is None and s.fill([(2, "e2")]) == 0
    await asyncio.sleep(0)  # the hold timer was cancelled: nothing is asked
    assert gaps.asked.empty()
    assert out.wire == ["e1"]


async def test_live_frames_held_while_catching_up_go_through_the_same_order() -> None:
    out, gaps = Outlet(), Gaps(hold_s=30)
    s = Session(Identity(user="u"), "hub", 8, out, gaps=gaps)
    s.push("e5", seq=5)  # two routers: 5 overtook 4
    s.push("e4", seq=4)
    s.push("e3", seq=3)  # the backlog carries it
    s.push_backlog("hello", 0)
    s.push_backlog("e3", 3)
    s.open(3, 3)
    assert out.wire == ["hello", "e3", "e4", "e5"] and gaps.holds == 1
    assert s.gap() is None


async def test_a_catch_up_fetches_what_the_store_holds_past_the_last_seq() -> None:
    """A HubLink came back after it was lost (docs/cluster.md, failures): what went out
    on it is gone, and a connection that gets no later event never sees a gap. It asks
    for everything past its last seq, unbounded, and sends it in order; a live frame
    that comes meanwhile waits behind it; what it already carried is not sent again."""
    out, gaps = Outlet(), Gaps(hold_s=30)
    s = open_session(out, gaps, head=2)
    s.push("e3", seq=3)
    assert s.catch_up()
    assert await asyncio.wait_for(gaps.asked.get(), 5) is s
    assert s.gap() == (3, 0)  # after 3, no upper bound
    s.push("e7", seq=7)  # live, while the fetch runs
    assert out.wire == ["e3"]
    assert s.fill([(3, "e3"), (4, "e4"), (6, "e6")]) == 1  # 5: expired
    assert out.wire == ["e3", "e4", "e6", "e7"] and s.last_seq == 7
    assert s.gap() is None
    # nothing stored past it: nothing sent, nothing held
    assert s.catch_up()
    assert s.fill([]) == 0 and s.gap() is None and out.wire[-1] == "e7"
    s.push("e8", seq=8)
    assert out.wire[-1] == "e8"


async def test_a_closed_or_gapless_session_does_not_catch_up() -> None:
    out = Outlet()
    plain = Session(Identity(user="u"), "hub", 8, out)  # (embedded without gap filling)
    plain.open(0, 0)
    assert not plain.catch_up()
    s = open_session(out, Gaps())
    s.close(CloseCode.SHUTDOWN, "bye")
    assert not s.catch_up()
