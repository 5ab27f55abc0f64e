"""HTTP/2 framing (RFC 9113) and HPACK field encoding (RFC 7541) shared by the bridge's
provider client (``pushgate.router.bridge._h2client``) and the fake providers' server
(``pushgate.fakes._h2server``).

Why not the h2 library: its state machine cost ~130-200 µs of CPU per request and
response on each side here, even tuned (no Huffman coding, no header validation), and
a campaign of a million pushes was bound by it on both ends (docs/design-notes.md).
Provider traffic is always the same shape (small POSTs, small answers), so
:class:`H2Protocol` does only what RFC 9113 asks of such an endpoint:

* frames parsed straight from the receive buffer; every frame queued in one event-loop
  turn leaves in one transport write;
* ``SETTINGS`` (acknowledged; ``INITIAL_WINDOW_SIZE``, ``MAX_FRAME_SIZE``,
  ``HEADER_TABLE_SIZE``, ``MAX_CONCURRENT_STREAMS`` honoured), ``PING`` (answered),
  ``GOAWAY``, ``RST_STREAM``, ``HEADERS`` + ``CONTINUATION``, padding, ``PRIORITY``
  (ignored), unknown frame types (ignored), server push refused (``ENABLE_PUSH=0``);
* flow control both ways: bodies wait for the connection and stream windows; received
  ``DATA`` is credited back in large increments;
* header blocks: decoded by :class:`FieldDecoder` (every block, in order, to keep its
  table in sync; Huffman-coded strings through ``hpack``'s table); encoded by
  :class:`FieldEncoder` (repeating fields indexed once, varying ones as literals, no
  Huffman coding).

The role (client or server) is a subclass: it owns the streams and gets
:meth:`H2Protocol.on_headers`, :meth:`H2Protocol.on_data`, resets and GOAWAYs.
A peer that breaks the protocol gets ``GOAWAY`` and the connection is closed.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import Any, cast

from hpack.exceptions import HPACKDecodingError
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types (RFC 9113 section 6)
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

DEFAULT_WINDOW = 65_535
MAX_WINDOW = 2**31 - 1
MAX_STREAM_ID = 2**31 - 1
RECV_FRAME_MAX = 16_384  # we keep the default SETTINGS_MAX_FRAME_SIZE
STREAM_WINDOW = 1 << 20  # what we advertise per stream
CONN_WINDOW_BONUS = 1 << 24  # added to the connection's receive window at start
TABLE_SIZE = 4_096  # HPACK default; used unless the peer allows less
# frames queued before a write even within one loop turn: the peer starts on the first
# requests (or answers) while the rest are made, instead of both sides taking turns
FLUSH_FRAMES = 128

_FRAME = struct.Struct(">BHBBL")  # length (24 bits as 8 + 16), type, flags, stream id
U32 = struct.Struct(">L")
SETTING = struct.Struct(">HL")


def frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _FRAME.pack(n >> 16, n & 0xFFFF, kind, flags, sid) + payload


def settings_frame(values: dict[int, int]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(SETTING.pack(k, v) for k, v in values.items()))


def hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """HPACK integer (RFC 7541 section 5.1) with ``first``'s high bits set."""
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes((first | value,))
    out = bytearray((first | top,))
    value -= top
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(raw: bytes) -> bytes:
    return hpack_int(len(raw), 7) + raw  # not Huffman-coded


# static table (RFC 7541 appendix A): names this code sends, and whole fields
STATIC_NAMES = {":authority": 1, ":method": 2, ":path": 4, ":scheme": 6, ":status": 8,
                "content-length": 28, "content-type": 31, "authorization": 23,
                "retry-after": 53}
STATIC_FIELDS = {(":method", "GET"): 2, (":method", "POST"): 3, (":scheme", "http"): 6,
                 (":scheme", "https"): 7, (":status", "200"): 8, (":status", "204"): 9,
                 (":status", "206"): 10, (":status", "304"): 11, (":status", "400"): 12,
                 (":status", "404"): 13, (":status", "500"): 14}
# values that change from message to message: never put in the dynamic table
NOT_INDEXED = frozenset({":path", ":status", "content-length", "apns-id", "apns-expiration",
                         "apns-unique-id", "retry-after"})


def literal(name: str, value: str, first: int = 0x00, prefix: int = 4) -> bytes:
    """A literal field (``first``: 0x00 without indexing, 0x10 never indexed, 0x40 with
    incremental indexing; ``prefix``: bits of the name index)."""
    raw = value.encode("latin-1")
    index = STATIC_NAMES.get(name)
    if index is not None:
        return hpack_int(index, prefix, first) + _string(raw)
    return bytes((first,)) + _string(name.encode("ascii")) + _string(raw)


class FieldEncoder:
    """HPACK encoding for one connection's sending side: fields that repeat
    (authorization, topic, content type, ...) go into the dynamic table on their second
    use and are one byte from then on; the fields in :data:`NOT_INDEXED` and values
    seen once are literals without indexing.
    The table mirrors the peer's decoder (RFC 7541 section 4): entries of ``len(name) +
    len(value) + 32`` bytes, newest first, oldest evicted."""

    def __init__(self, max_size: int = TABLE_SIZE) -> None:
        self.max_size = max_size
        self.size = 0
        self.inserted = 0
        self._entries: deque[tuple[tuple[str, str], int, int]] = deque()  # newest first
        self._where: dict[tuple[str, str], int] = {}  # field -> insertion number
        self._seen: set[tuple[str, str]] = set()  # fields sent once, not indexed yet
        self._smallest: int | None = None  # smallest size since the last block, if changed
        # field -> its one-byte (or few-byte) index representation: static entries, and
        # dynamic ones until the next insertion moves every relative index
        self._encoded: dict[tuple[str, str], bytes] = {}

    def resize(self, peer_max: int) -> None:
        """The peer's ``SETTINGS_HEADER_TABLE_SIZE``: use at most that (and at most
        :data:`TABLE_SIZE`), announced at the start of the next header block (the
        smallest size since the last block first, then the new one: RFC 7541 4.2)."""
        size = min(peer_max, TABLE_SIZE)
        if size != self.max_size:
            self.max_size = size
            self._smallest = size if self._smallest is None else min(size, self._smallest)
            self._evict(0)

    def _evict(self, room: int) -> None:
        self._encoded.clear()
        while self._entries and self.size + room > self.max_size:
            key, size, number = self._entries.pop()
            self.size -= size
            if self._where.get(key) == number:
                del self._where[key]

    def field(self, name: str, value: str) -> bytes:
        key = (name, value)
        encoded = self._encoded.get(key)
        if encoded is not None:
            return encoded
        static = STATIC_FIELDS.get(key)
        if static is not None:
            encoded = self._encoded[key] = bytes((0x80 | static,))
            return encoded
        if name in NOT_INDEXED:
            return literal(name, value)
        number = self._where.get(key)
        if number is not None:
            encoded = self._encoded[key] = hpack_int(62 + self.inserted - 1 - number, 7, 0x80)
            return encoded
        if key not in self._seen:  # indexed from its second use: one-off values (a
            if len(self._seen) >= 4096:  # per-event collapse id) do not churn the table
                self._seen.clear()
            self._seen.add(key)
            return literal(name, value)
        size = len(name.encode("ascii")) + len(value.encode("latin-1")) + 32
        if size > self.max_size:
            return literal(name, value)
        self._evict(size)  # (clears the encoded indexes: they all move by one)
        self._entries.appendleft((key, size, self.inserted))
        self._where[key] = self.inserted
        self.inserted += 1
        self.size += size
        return literal(name, value, 0x40, 6)

    def block(self, fields: list[tuple[str, str]]) -> bytes:
        """A header block (the caller puts pseudo-headers first)."""
        field = self.field
        if self._smallest is not None:  # size updates come before the first field
            updates = [hpack_int(self._smallest, 5, 0x20)]
            if self._smallest != self.max_size:
                updates.append(hpack_int(self.max_size, 5, 0x20))
            self._smallest = None
            return b"".join(updates + [field(k, v) for k, v in fields])
        return b"".join([field(k, v) for k, v in fields])


class HeaderBlockError(Exception):
    """A header block that cannot be decoded (RFC 9113: a connection error of type
    ``COMPRESSION_ERROR``)."""


_STATIC: tuple[tuple[bytes, bytes], ...] = tuple(HeaderTable.STATIC_TABLE)
MAX_HEADER_LIST = 65_536  # decoded size (RFC 7541 section 4.1 sizes) of one block's fields


class FieldDecoder:
    """HPACK decoding (RFC 7541) for one connection's receiving side, ~5x cheaper than
    ``hpack.Decoder`` here (no per-field objects, logging or memoryviews), which took a
    quarter of each fake provider's CPU. Fields come back as raw ``(name, value)``
    bytes. The dynamic table holds at most ``max_size`` bytes (our
    ``SETTINGS_HEADER_TABLE_SIZE``: the default 4,096, we never announce another)."""

    def __init__(self, max_size: int = TABLE_SIZE) -> None:
        self.max_allowed = max_size  # what the peer's size updates may ask for
        self.max_size = max_size
        self.size = 0
        self._table: deque[tuple[bytes, bytes]] = deque()  # newest first

    def _evict_to(self, limit: int) -> None:
        """Drop the oldest entries until the table holds at most ``limit`` bytes."""
        table = self._table
        while table and self.size > limit:
            old_name, old_value = table.pop()
            self.size -= len(old_name) + len(old_value) + 32

    def _add(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 32
        self._evict_to(self.max_size - size)
        if size <= self.max_size:  # larger than the table: it empties it (4.4)
            self._table.appendleft((name, value))
            self.size += size

    def _resize(self, size: int) -> None:
        if size > self.max_allowed:
            raise HeaderBlockError(f"table size update to {size} over {self.max_allowed}")
        self.max_size = size
        self._evict_to(size)

    def _entry(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= 61:
            return _STATIC[index - 1]
        if 61 < index <= 61 + len(self._table):
            return self._table[index - 62]
        raise HeaderBlockError(f"field index {index} not in the table")

    def decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        fields: list[tuple[bytes, bytes]] = []
        pos, end, total = 0, len(block), 0
        try:
            while pos < end:
                b = block[pos]
                if b & 0x80:  # indexed field (6.1)
                    index = b & 0x7F
                    pos += 1
                    if index == 0x7F:
                        index, pos = _integer(block, pos, index)
                    name, value = self._entry(index)
                elif b & 0x40 or not b & 0x20:  # literal (6.2): indexing, without, never
                    bits = 0x3F if b & 0x40 else 0x0F
                    index = b & bits
                    pos += 1
                    if index == bits:
                        index, pos = _integer(block, pos, index)
                    if index:
                        name = self._entry(index)[0]
                    else:
                        name, pos = _text(block, pos)
                    value, pos = _text(block, pos)
                    if b & 0x40:
                        self._add(name, value)
                else:  # dynamic table size update (6.3): only before the first field
                    if fields:
                        raise HeaderBlockError("table size update after a field")
                    size = b & 0x1F
                    pos += 1
                    if size == 0x1F:
                        size, pos = _integer(block, pos, size)
                    self._resize(size)
                    continue
                total += len(name) + len(value) + 32
                if total > MAX_HEADER_LIST:
                    raise HeaderBlockError(f"header list over {MAX_HEADER_LIST} bytes")
                fields.append((name, value))
        except IndexError:
            raise HeaderBlockError("header block truncated") from None
        return fields


def _integer(block: bytes, pos: int, value: int) -> tuple[int, int]:
    """The continuation bytes of an integer whose prefix was full (5.1)."""
    shift = 0
    while True:
        b = block[pos]
        pos += 1
        value += (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 28:  # beyond 2^32: no field or table is that large
            raise HeaderBlockError("integer too large")


def _text(block: bytes, pos: int) -> tuple[bytes, int]:
    """A string literal (5.2): the bytes, Huffman-decoded if so marked."""
    b = block[pos]
    n = b & 0x7F
    pos += 1
    if n == 0x7F:
        n, pos = _integer(block, pos, n)
    if pos + n > len(block):
        raise HeaderBlockError("string past the end of the header block")
    raw = block[pos:pos + n]
    if b & 0x80:
        try:
            raw = decode_huffman(raw)
        except HPACKDecodingError as e:
            raise HeaderBlockError(f"bad Huffman code: {e}") from None
    return bytes(raw), pos + n


class ProtocolViolation(Exception):
    """The peer broke the protocol (RFC 9113 connection error ``code``)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class StreamBase:
    """What the framing layer keeps per stream (roles subclass it)."""

    __slots__ = ("pending", "pending_end", "send_window", "unacked")

    def __init__(self, send_window: int) -> None:
        self.send_window = send_window
        self.pending: memoryview | None = None  # body bytes waiting for window
        self.pending_end = True  # END_STREAM on the last of them
        self.unacked = 0  # received DATA bytes not yet credited back


def unpad(payload: bytes, flags: int) -> bytes:
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise ProtocolViolation(PROTOCOL_ERROR, "bad padding")
    return payload[1:len(payload) - payload[0]]


class H2Protocol(asyncio.Protocol):
    """The framing layer of one connection; see the module docstring."""

    is_client = True

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, Any] = {}  # sid -> StreamBase subclass
        self.closed = False  # no new streams (GOAWAY sent or received, failure)
        self.encoder = FieldEncoder()
        self.peer_max_streams = 2**31 - 1
        self.send_window = DEFAULT_WINDOW  # connection level, towards the peer
        self.peer_initial = DEFAULT_WINDOW
        self.peer_frame_max = RECV_FRAME_MAX
        self.settings_seen = False
        self._decoder = FieldDecoder()
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._block_sid = 0  # header block being assembled (HEADERS + CONTINUATION)
        self._block = bytearray()
        self._block_flags = 0
        self._blocked: dict[int, None] = {}  # streams with body bytes waiting for window
        self._recv_unacked = 0
        self._need_preface = not self.is_client

    # -- role hooks ----------------------------------------------------------------------

    def on_headers(self, sid: int, fields: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        raise NotImplementedError

    def on_data(self, sid: int, stream: Any, data: bytes, end_stream: bool) -> None:
        raise NotImplementedError

    def on_reset(self, sid: int, code: int) -> None:
        raise NotImplementedError

    def on_goaway(self, last_sid: int, code: int) -> None:
        raise NotImplementedError

    def on_settings(self) -> None:
        """The peer's SETTINGS were applied (first one: the connection is ready)."""

    def last_peer_stream(self) -> int:
        """The highest stream the peer opened that we may have acted on (GOAWAY)."""
        return 0

    def on_sent(self, sid: int, stream: Any) -> None:
        """The last bytes of a body that had to wait for window were queued."""

    def on_failure(self, message: str) -> None:
        """The connection is unusable (protocol error, lost): fail what is open."""
        raise NotImplementedError

    # -- start -------------------------------------------------------------------------

    def start(self, transport: asyncio.BaseTransport, settings: dict[int, int]) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop: no subclass
        settings = {**settings, INITIAL_WINDOW_SIZE: STREAM_WINDOW}
        if self.is_client:
            settings[ENABLE_PUSH] = 0
        transport.write((PREFACE if self.is_client else b"") + settings_frame(settings)
                        + frame(WINDOW_UPDATE, 0, 0, U32.pack(CONN_WINDOW_BONUS)))

    # -- receiving ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos, end = 0, len(buf)
        try:
            if self._need_preface:
                if buf[:len(PREFACE)] != PREFACE[:min(end, len(PREFACE))]:
                    raise ProtocolViolation(PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                if end < len(PREFACE):
                    return
                pos = len(PREFACE)
                self._need_preface = False
            while end - pos >= 9:
                hi, lo, kind, flags, sid = _FRAME.unpack_from(buf, pos)
                length = (hi << 16) | lo
                if length > RECV_FRAME_MAX:
                    raise ProtocolViolation(FRAME_SIZE_ERROR, f"frame of {length} bytes")
                if end - pos - 9 < length:
                    break
                payload = bytes(buf[pos + 9:pos + 9 + length])
                pos += 9 + length
                self._frame(kind, flags, sid & MAX_STREAM_ID, payload)
        except ProtocolViolation as e:
            last = U32.pack(self.last_peer_stream())
            self._out.append(frame(GOAWAY, 0, 0, last + U32.pack(e.code)))
            self.flush()
            self.fail(f"HTTP/2 protocol error: {e}")
            return
        del buf[:pos]
        self.flush()

    def _frame(self, kind: int, flags: int, sid: int, payload: bytes) -> None:
        if self._block_sid and (kind != CONTINUATION or sid != self._block_sid):
            raise ProtocolViolation(PROTOCOL_ERROR, "header block interrupted")
        if not self.settings_seen and kind != SETTINGS:
            raise ProtocolViolation(PROTOCOL_ERROR, "first frame is not SETTINGS")
        if kind == HEADERS:
            if sid == 0:
                raise ProtocolViolation(PROTOCOL_ERROR, "HEADERS on stream 0")
            payload = unpad(payload, flags)
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            if flags & END_HEADERS:
                self._headers(sid, payload, bool(flags & END_STREAM))
            else:
                self._block_sid, self._block, self._block_flags = sid, bytearray(payload), flags
        elif kind == CONTINUATION:
            if sid == 0 or sid != self._block_sid:
                raise ProtocolViolation(PROTOCOL_ERROR, "unexpected CONTINUATION")
            self._block += payload
            if flags & END_HEADERS:
                block, self._block_sid, self._block = bytes(self._block), 0, bytearray()
                self._headers(sid, block, bool(self._block_flags & END_STREAM))
        elif kind == DATA:
            self._data(sid, flags, payload)
        elif kind == WINDOW_UPDATE:
            self._window_update(sid, payload)
        elif kind == SETTINGS:
            self._settings(sid, flags, payload)
        elif kind == PING:
            if sid != 0:
                raise ProtocolViolation(PROTOCOL_ERROR, "PING on a stream")
            if len(payload) != 8:
                raise ProtocolViolation(FRAME_SIZE_ERROR, "PING not 8 bytes")
            if not flags & ACK:
                self._out.append(frame(PING, ACK, 0, payload))
        elif kind == RST_STREAM:
            if sid == 0:
                raise ProtocolViolation(PROTOCOL_ERROR, "RST_STREAM on stream 0")
            if len(payload) != 4:
                raise ProtocolViolation(FRAME_SIZE_ERROR, "RST_STREAM not 4 bytes")
            self._blocked.pop(sid, None)
            self.on_reset(sid, U32.unpack(payload)[0])
        elif kind == GOAWAY:
            if len(payload) < 8 or sid != 0:
                raise ProtocolViolation(PROTOCOL_ERROR, "bad GOAWAY")
            self.closed = True
            self.on_goaway(U32.unpack_from(payload)[0] & MAX_STREAM_ID,
                           U32.unpack_from(payload, 4)[0])
        elif kind == PUSH_PROMISE:
            raise ProtocolViolation(PROTOCOL_ERROR, "PUSH_PROMISE with push disabled")
        elif kind == PRIORITY and sid == 0:
            raise ProtocolViolation(PROTOCOL_ERROR, "PRIORITY on stream 0")
        # PRIORITY and unknown frame types are ignored (RFC 9113 section 5.5)

    def _headers(self, sid: int, block: bytes, end_stream: bool) -> None:
        try:  # always decoded: the decoder's table must see every block
            fields = self._decoder.decode(block)
        except HeaderBlockError as e:
            raise ProtocolViolation(COMPRESSION_ERROR, f"bad header block: {e}") from None
        self.on_headers(sid, fields, end_stream)

    def _data(self, sid: int, flags: int, payload: bytes) -> None:
        if sid == 0:
            raise ProtocolViolation(PROTOCOL_ERROR, "DATA on stream 0")
        n = len(payload)
        self._recv_unacked += n
        if self._recv_unacked >= CONN_WINDOW_BONUS // 2:
            self._out.append(frame(WINDOW_UPDATE, 0, 0, U32.pack(self._recv_unacked)))
            self._recv_unacked = 0
        s = self.streams.get(sid)
        if s is None:
            return  # a stream that was reset or is done
        end = bool(flags & END_STREAM)
        if not end and n:
            s.unacked += n
            if s.unacked >= STREAM_WINDOW // 2:
                self._out.append(frame(WINDOW_UPDATE, 0, sid, U32.pack(s.unacked)))
                s.unacked = 0
        self.on_data(sid, s, unpad(payload, flags), end)

    def _window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ProtocolViolation(FRAME_SIZE_ERROR, "bad WINDOW_UPDATE")
        inc = U32.unpack(payload)[0] & MAX_WINDOW
        if sid == 0:
            if inc == 0:
                raise ProtocolViolation(PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += inc
            if self.send_window > MAX_WINDOW:
                raise ProtocolViolation(FLOW_CONTROL_ERROR, "connection window over 2^31-1")
        else:
            s = self.streams.get(sid)
            if s is None:
                return
            if inc == 0 or s.send_window + inc > MAX_WINDOW:
                self.reset(sid, PROTOCOL_ERROR if inc == 0 else FLOW_CONTROL_ERROR)
                self._blocked.pop(sid, None)
                self.on_reset(sid, -1)
                return
            s.send_window += inc
        self.pump()

    def _settings(self, sid: int, flags: int, payload: bytes) -> None:
        if sid != 0:
            raise ProtocolViolation(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise ProtocolViolation(FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise ProtocolViolation(FRAME_SIZE_ERROR, "SETTINGS length")
        for i in range(0, len(payload), 6):
            key, value = SETTING.unpack_from(payload, i)
            if key == MAX_CONCURRENT_STREAMS:
                self.peer_max_streams = value
            elif key == HEADER_TABLE_SIZE:
                self.encoder.resize(value)
            elif key == INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ProtocolViolation(FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE over 2^31-1")
                delta, self.peer_initial = value - self.peer_initial, value
                for s in self.streams.values():
                    s.send_window += delta
            elif key == MAX_FRAME_SIZE:
                if not 16_384 <= value <= 16_777_215:
                    raise ProtocolViolation(PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range")
                self.peer_frame_max = value
            elif key == ENABLE_PUSH and (value > 1 or (value and self.is_client)):
                # a client may ask for push (we never push); a server must not send 1
                raise ProtocolViolation(PROTOCOL_ERROR, "bad ENABLE_PUSH")
        self._out.append(frame(SETTINGS, ACK, 0))
        self.settings_seen = True
        self.on_settings()
        self.pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(f"connection lost: {exc or 'closed'}")

    def fail(self, message: str) -> None:
        self.closed = True
        self._blocked.clear()
        self.on_failure(message)
        if self.transport is not None:
            self.transport.close()

    # -- sending -----------------------------------------------------------------------

    def send_headers(self, sid: int, fields: list[tuple[str, str]], end_stream: bool) -> None:
        """Queue a header block (HEADERS + CONTINUATION as the peer's frame size needs).
        Encoded here, with nothing in between: HPACK state follows the block order."""
        block = self.encoder.block(fields)
        out, fmax = self._out, self.peer_frame_max
        end = END_STREAM if end_stream else 0
        if len(block) <= fmax:
            out.append(frame(HEADERS, END_HEADERS | end, sid, block))
            return
        out.append(frame(HEADERS, end, sid, block[:fmax]))
        for i in range(fmax, len(block), fmax):
            last = i + fmax >= len(block)
            out.append(frame(CONTINUATION, END_HEADERS if last else 0, sid, block[i:i + fmax]))

    def send_body(self, sid: int, s: StreamBase, body: bytes, end_stream: bool = True) -> bool:
        """Queue ``body`` as DATA within the windows; the rest waits for WINDOW_UPDATE
        (:meth:`on_sent` when it has left). Returns whether all of it was queued."""
        n = len(body)
        if n <= self.send_window and n <= s.send_window and n <= self.peer_frame_max \
                and not self._blocked:
            self._out.append(frame(DATA, END_STREAM if end_stream else 0, sid, body))
            self.send_window -= n
            s.send_window -= n
            return True
        s.pending, s.pending_end = memoryview(body), end_stream
        self._blocked[sid] = None
        self.pump()
        return s.pending is None

    def pump(self) -> None:
        """Send what the flow-control windows allow of the waiting bodies."""
        for sid in list(self._blocked):
            if self.send_window <= 0:
                return
            s = self.streams.get(sid)
            if s is None or s.pending is None:
                self._blocked.pop(sid, None)
                continue
            view = s.pending
            while view and self.send_window > 0 and s.send_window > 0:
                n = min(len(view), self.send_window, s.send_window, self.peer_frame_max)
                last = n == len(view)
                flags = END_STREAM if last and s.pending_end else 0
                self._out.append(frame(DATA, flags, sid, bytes(view[:n])))
                view = view[n:]
                self.send_window -= n
                s.send_window -= n
            if view:
                s.pending = view
            else:
                s.pending = None
                del self._blocked[sid]
                self.on_sent(sid, s)

    def unblock(self, sid: int) -> None:
        """Forget a stream's waiting body (the stream ended)."""
        self._blocked.pop(sid, None)

    def reset(self, sid: int, code: int) -> None:
        self._blocked.pop(sid, None)
        self._out.append(frame(RST_STREAM, 0, sid, U32.pack(code)))

    def goaway(self, code: int = NO_ERROR) -> None:
        self.closed = True
        last = U32.pack(self.last_peer_stream())
        self._out.append(frame(GOAWAY, 0, 0, last + U32.pack(code)))
        self.flush()

    def flush(self) -> None:
        if self._out and self.transport is not None and not self.transport.is_closing():
            out, self._out = self._out, []
            self.transport.write(b"".join(out))

    def schedule_flush(self) -> None:
        if len(self._out) >= FLUSH_FRAMES:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()
