"""pushgate.hub.session: direct writes, the queue behind a paused transport, the
slow-consumer close, catch-up and the no-reopen rule (issue #15: zombie sessions)."""

from __future__ import annotations

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.protocol import State as WsState
from websockets.uri import parse_uri

from pushgate.auth import Identity
from pushgate.errors import CloseCode
from pushgate.hub.session import Session, State, wire_text_frame


def parse(wire: bytes) -> list[tuple[Opcode, str]]:
    """Frames as a websockets client decodes them (it rejects malformed ones)."""
    client = ClientProtocol(parse_uri("ws://test/"), state=WsState.OPEN)
    client.receive_data(wire)
    return [(f.opcode, bytes(f.data).decode()) for f in client.events_received()]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_wire_frames_decode_as_one_text_frame(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)  # multi-byte UTF-8 too
    assert parse(wire_text_frame(text)) == [(Opcode.TEXT, text)]


def test_the_same_frame_is_encoded_once() -> None:
    frame = '{"type":"event","seq":1}'
    assert wire_text_frame(frame) is wire_text_frame(frame)
    assert parse(wire_text_frame(frame + " ")) == [(Opcode.TEXT, frame + " ")]


class Outlet:
    """The connection as a session sees it: records what reaches the wire."""

    def __init__(self) -> None:
        self.paused = False
        self.wire: list[str] = []
        self.close: tuple[int, str] | None = None
        self.left: list[Session] = []

    def write(self, data: bytes) -> None:
        assert self.close is None, "a frame after the close frame"
        self.wire.extend(text for _, text in parse(data))

    def send_close(self, code: int, reason: str) -> None:
        if self.close is None:
            self.close = (code, reason)

    def closing(self, session: Session) -> None:
        self.left.append(session)

    def resume(self, s: Session) -> None:
        self.paused = False
        s.drain()


def open_session(out: Outlet, max_queue: int = 8) -> Session:
    s = Session(Identity(user="u"), "hub", max_queue, out)
    s.open(0)
    return s


def test_live_frames_go_straight_to_the_socket_when_nothing_waits() -> None:
    out = Outlet()
    s = open_session(out)
    assert s.push("a", seq=1) and s.push("b", seq=2)
    assert out.wire == ["a", "b"] and s.queued == 0
    assert s.last_seq == 2


def test_order_is_kept_while_the_transport_is_paused() -> None:
    out = Outlet()
    s = open_session(out)
    s.push("1", seq=1)
    out.paused = True  # the transport's buffer is above its high-water mark
    s.push("2", seq=2)
    s.push("3", seq=3)
    assert out.wire == ["1"] and s.queued == 2 and s.paused_at > 0
    out.resume(s)
    assert out.wire == ["1", "2", "3"] and s.queued == 0 and s.paused_at == 0
    assert s.last_seq == 3
    s.push("4")  # the queue drained: direct again
    assert out.wire[-1] == "4"


def test_a_consumer_that_cannot_take_frames_is_closed_as_slow_and_leaves_at_once() -> None:
    out = Outlet()
    s = open_session(out, max_queue=3)
    out.paused = True
    results = [s.push(str(i)) for i in range(5)]
    assert results[:3] == [True] * 3 and results[3] is False and results[4] is False
    assert s.close_code == CloseCode.SLOW and s.state is State.CLOSING
    assert out.left == [s]  # out of the registry and directory now, not when TCP ends
    assert out.close == (CloseCode.SLOW, s._close_reason)  # queue dropped, close written
    assert out.wire == []


def test_closing_waits_for_the_queue_then_sends_the_close_frame() -> None:
    out = Outlet()
    s = open_session(out)
    out.paused = True
    s.push("1")
    s.close(CloseCode.SHUTDOWN, "bye")
    assert out.close is None and not s.push("2")
    out.resume(s)
    assert out.wire == ["1"] and out.close == (CloseCode.SHUTDOWN, "bye")


def test_the_write_deadline_while_closing_drops_the_queue() -> None:
    out = Outlet()
    s = open_session(out)
    out.paused = True
    s.push("1")
    s.close(CloseCode.SHUTDOWN, "bye")
    s.close(CloseCode.SLOW, "write deadline")  # what the timer wheel does
    assert out.close == (CloseCode.SHUTDOWN, "bye") and out.wire == []


def test_frames_while_catching_up_wait_for_the_backlog() -> None:
    out = Outlet()
    s = Session(Identity(user="u"), "hub", 8, out)
    s.push("live-2", seq=2)  # held: the session is catching up; the backlog carries it
    s.push("live-3", seq=3)
    s.push_backlog("hello", 0)
    s.push_backlog("backlog-1", 1)
    s.push_backlog("backlog-2", 2)
    s.open(2)
    assert out.wire == ["hello", "backlog-1", "backlog-2", "live-3"]


def test_a_session_kicked_while_catching_up_gets_hello_first_and_is_never_reopened() -> None:
    out = Outlet()
    s = Session(Identity(user="u"), "hub", 8, out)
    s.push("live-1", seq=1)
    s.kick("kicked", "quota")
    assert out.left == [s] and out.wire == []
    s.end_catch_up("hello")  # the connect sequence finished
    s.open(0)  # a late open must not revive it
    assert s.state is State.CLOSING
    assert out.wire == ["hello", "kicked"] and out.close == (CloseCode.KICKED, "quota")
    assert not s.push("live-2", seq=2)


def test_an_open_session_kicked_gets_the_frame_then_the_close() -> None:
    out = Outlet()
    s = open_session(out)
    s.kick("kicked", "quota")
    assert out.wire == ["kicked"] and out.close == (CloseCode.KICKED, "quota")


def test_a_connection_closed_under_the_session_writes_nothing_more() -> None:
    out = Outlet()
    s = open_session(out)
    s.abandon(1002)
    assert not s.push("x") and out.wire == [] and out.left == [s]
    s.closed(1002)
    assert s.state is State.CLOSED and s.close_code == 1002


def test_each_seq_at_most_once_and_in_increasing_order_per_connection() -> None:
    out = Outlet()
    s = open_session(out)
    assert s.push("e5", seq=5)
    assert not s.push("e5", seq=5)  # the same event again (a second router, a retry)
    assert not s.push("e4", seq=4)  # overtaken by 5: the client fetches the gap
    assert s.push("t", seq=0)  # transient events have no seq: always delivered
    out.paused = True
    assert s.push("e6", seq=6) and not s.push("e6", seq=6)  # also while queued
    out.resume(s)
    assert out.wire == ["e5", "t", "e6"]


def test_a_send_with_ack_is_delivered_again_so_it_can_be_acked() -> None:
    out = Outlet()
    s = open_session(out)
    s.push("e3", seq=3)
    assert s.push("e3-again", seq=3, again=True)
    assert s.last_seq == 3 and out.wire == ["e3", "e3-again"]


def test_live_frames_the_backlog_carried_are_dropped_on_open() -> None:
    out = Outlet()
    s = Session(Identity(user="u"), "hub", 8, out)
    s.push("live-4", seq=4)
    s.push("ack-2", seq=2, again=True)  # a retried ack-send while catching up
    s.push_backlog("hello", 0)
    for seq in (3, 4, 5):
        s.push_backlog(f"backlog-{seq}", seq)
    s.open(5)
    assert out.wire == ["hello", "backlog-3", "backlog-4", "backlog-5", "ack-2"]


def test_a_connection_knows_the_seqs_sent_to_it_its_history_and_what_it_fetched() -> None:
    """protocol.md, ``ack``: an ack counts only for a seq the connection knew of; one
    above (not sent yet) would mark the event stored later under it as acked."""
    s = Session(Identity(user="u"), "hub", 8, Outlet())
    s.open(0, 5)  # the user's head at connect: 5 (history the client may hold)
    assert s.push("e6", seq=6)
    assert s.knows(1) and s.knows(5) and s.knows(6)
    assert not s.knows(7) and not s.knows(100)
    s.note_from_store(40, 42)  # a fetch reply
    assert s.knows(41) and not s.knows(43)
