"""HTTP/2 frames (RFC 9113 section 4 and 6): the numbers on the wire, and the few
helpers that build frames. Parsing happens in :class:`pushgate._h2.connection.H2Protocol`
straight from the receive buffer with :data:`FRAME_HEADER`.

The window and size constants are this implementation's choices (what it advertises
and what it accepts), not protocol defaults, unless the comment says so.
"""

from __future__ import annotations

import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types (section 6)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
# flags
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
# settings
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE = \
    1, 2, 3, 4, 5
# error codes
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED, \
    FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = \
    0x0, 0x1, 0x2, 0x3, 0x5, 0x6, 0x7, 0x8, 0x9

DEFAULT_WINDOW = 65_535  # the protocol's initial window, until SETTINGS say otherwise
MAX_WINDOW = 2**31 - 1
MAX_STREAM_ID = 2**31 - 1
RECV_FRAME_MAX = 16_384  # we keep the default SETTINGS_MAX_FRAME_SIZE
STREAM_WINDOW = 1 << 20  # what we advertise per stream
CONN_WINDOW_BONUS = 1 << 24  # added to the connection's receive window at start

FRAME_HEADER = struct.Struct(">BHBBL")  # length (24 bits as 8 + 16), type, flags, stream id
U32 = struct.Struct(">L")
SETTING = struct.Struct(">HL")


def frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    """One frame; the caller keeps ``payload`` within the peer's maximum frame size."""
    n = len(payload)
    return FRAME_HEADER.pack(n >> 16, n & 0xFFFF, kind, flags, sid) + payload


def settings_frame(values: dict[int, int]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(SETTING.pack(k, v) for k, v in values.items()))
