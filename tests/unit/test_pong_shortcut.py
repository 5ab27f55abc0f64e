"""The hub counts the keepalive's empty pong without ``websockets`` when it arrives
alone at a frame boundary (pushgate.hub.connection, docs/design-notes.md §12). These
check the two facts that short cut rests on against the library itself."""

from __future__ import annotations

import logging
import os

import pytest
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from pushgate.hub.connection import EMPTY_PONG_HEAD, client_frame_bytes


def test_the_six_bytes_are_an_empty_pong_and_nothing_else_for_websockets() -> None:
    """What the short cut skips: websockets turns those bytes into one empty PONG and
    changes nothing else (no reply, no state change), whatever the mask."""
    for _ in range(50):
        proto = ServerProtocol(logger=logging.getLogger("test"), state=State.OPEN)
        proto.receive_data(EMPTY_PONG_HEAD + os.urandom(4))
        assert proto.events_received() == [Frame(Opcode.PONG, b"")]
        assert proto.data_to_send() == []
        assert proto.state is State.OPEN
    # ...and they are what the library's own client answers to the server's ping
    assert Frame(Opcode.PONG, b"").serialize(mask=True, extensions=[])[:2] == EMPTY_PONG_HEAD


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_frame_sizes_match_the_librarys_client_frames(n: int) -> None:
    for opcode in (Opcode.TEXT, Opcode.CONT, Opcode.PONG) if n <= 125 else (Opcode.TEXT,):
        wire = Frame(opcode, b"x" * n).serialize(mask=True, extensions=[])
        assert client_frame_bytes(n) == len(wire)
