"""pushgate.hub.session: the send queue, the writer task and direct writes."""

from __future__ import annotations

import asyncio

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


class Socket:
    """Records what reaches the socket by either path; ``accept`` says whether a direct
    write is possible right now."""

    def __init__(self) -> None:
        self.accept = True
        self.wire: list[str] = []
        self.via_writer: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()  # the writer is in send()
        self.written = asyncio.Event()  # a frame reached the wire

    def direct(self, data: bytes) -> bool:
        if not self.accept:
            return False
        self.wire.extend(text for _, text in parse(data))
        self.written.set()
        return True

    async def send(self, frame: str) -> None:
        self.entered.set()
        await self.gate.wait()
        self.via_writer.append(frame)
        self.wire.append(frame)
        self.written.set()

    async def close(self, code: int, reason: str) -> None:
        pass


async def open_session(sock: Socket, max_queue: int = 8) -> tuple[Session, asyncio.Task[None]]:
    s = Session(Identity(user="u"), "hub", max_queue)
    s.set_direct(sock.direct)
    writer = asyncio.create_task(s.run_writer(sock.send, sock.close))
    s.open(0)
    return s, writer


async def settle(sock: Socket, n: int) -> None:
    async with asyncio.timeout(5):
        while len(sock.wire) < n:
            sock.written.clear()
            await sock.written.wait()


async def test_live_frames_go_straight_to_the_socket_when_nothing_waits() -> None:
    sock = Socket()
    s, writer = await open_session(sock)
    assert s.push("a", seq=1) and s.push("b", seq=2)
    assert sock.wire == ["a", "b"] and sock.via_writer == []  # written during push()
    assert s.last_seq == 2
    s.close(CloseCode.NORMAL, "")
    await writer


async def test_order_is_kept_when_the_socket_cannot_take_a_frame() -> None:
    sock = Socket()
    s, writer = await open_session(sock)
    s.push("1")
    sock.accept = False  # e.g. the transport's buffer is above its high-water mark
    sock.gate.clear()  # and the writer's send waits too
    s.push("2")
    s.push("3")
    sock.accept = True  # the socket could take a frame again, but 2 and 3 are waiting
    s.push("4")
    await asyncio.sleep(0)
    assert sock.wire == ["1"]
    sock.gate.set()
    await settle(sock, 4)
    assert sock.wire == ["1", "2", "3", "4"] and sock.via_writer == ["2", "3", "4"]
    s.push("5")  # the queue drained: direct again
    assert sock.wire[-1] == "5" and sock.via_writer[-1] == "4"
    s.close(CloseCode.NORMAL, "")
    await writer


async def test_a_consumer_that_cannot_take_frames_is_closed_as_slow() -> None:
    sock = Socket()
    sock.accept = False
    sock.gate.clear()
    s, writer = await open_session(sock, max_queue=3)
    assert s.push("0")
    await asyncio.wait_for(sock.entered.wait(), 5)  # the writer took it, waits in send
    results = [s.push(str(i)) for i in range(1, 6)]
    assert results[:3] == [True] * 3 and results[3] is False
    assert s.close_code == CloseCode.SLOW and s.state is State.CLOSING
    sock.gate.set()
    await writer
    assert sock.wire == ["0"]  # the frame the writer already held; the queue was dropped


async def test_frames_while_catching_up_wait_for_the_backlog() -> None:
    sock = Socket()
    s = Session(Identity(user="u"), "hub", 8)
    s.set_direct(sock.direct)
    writer = asyncio.create_task(s.run_writer(sock.send, sock.close))
    s.push("live-3", seq=3)  # held: the session is catching up
    s.push_backlog("backlog-1", 1)
    s.push_backlog("backlog-2", 2)
    s.open(2)
    await settle(sock, 3)
    assert sock.wire == ["backlog-1", "backlog-2", "live-3"]
    s.close(CloseCode.NORMAL, "")
    await writer

