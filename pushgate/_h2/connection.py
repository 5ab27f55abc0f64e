"""One HTTP/2 connection's framing (RFC 9113): :class:`H2Protocol`, the base of the
client role (:mod:`pushgate._h2.client`) and the server role (:mod:`pushgate._h2.server`).

Provider traffic is always the same shape (small POSTs, small answers), so
:class:`H2Protocol` does only what RFC 9113 asks of such an endpoint:

* frames parsed straight from the receive buffer; every frame queued in one event-loop
  turn leaves in one transport write (at most :data:`FLUSH_FRAMES` at a time);
* ``SETTINGS`` (acknowledged; ``INITIAL_WINDOW_SIZE``, ``MAX_FRAME_SIZE``,
  ``HEADER_TABLE_SIZE``, ``MAX_CONCURRENT_STREAMS`` honoured), ``PING`` (answered),
  ``GOAWAY``, ``RST_STREAM``, ``HEADERS`` + ``CONTINUATION``, padding, ``PRIORITY``
  (ignored), unknown frame types (ignored), server push refused (``ENABLE_PUSH=0``);
* flow control both ways: bodies wait for the connection and stream windows; received
  ``DATA`` is credited back in large increments;
* header blocks: decoded by :class:`~pushgate._h2.hpack.FieldDecoder` (every block, in
  order, to keep its table in sync); encoded by :class:`~pushgate._h2.hpack.FieldEncoder`
  (``not_indexed``: the header names it never puts in its table).

The role is a subclass: it owns the streams (:class:`StreamBase` subclasses) and gets
:meth:`H2Protocol.on_headers`, :meth:`H2Protocol.on_data`, resets and GOAWAYs.
A peer that breaks the protocol gets ``GOAWAY`` with the error code of the
:class:`ProtocolViolation`, the role's :meth:`H2Protocol.on_failure`, and the
connection is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Set
from typing import Any, cast

from pushgate._h2.frames import (
    ACK,
    COMPRESSION_ERROR,
    CONN_WINDOW_BONUS,
    CONTINUATION,
    DATA,
    DEFAULT_WINDOW,
    ENABLE_PUSH,
    END_HEADERS,
    END_STREAM,
    FLOW_CONTROL_ERROR,
    FRAME_HEADER,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADER_TABLE_SIZE,
    HEADERS,
    INITIAL_WINDOW_SIZE,
    MAX_CONCURRENT_STREAMS,
    MAX_FRAME_SIZE,
    MAX_STREAM_ID,
    MAX_WINDOW,
    NO_ERROR,
    PADDED,
    PING,
    PREFACE,
    PRIORITY,
    PRIORITY_FLAG,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    RECV_FRAME_MAX,
    RST_STREAM,
    SETTING,
    SETTINGS,
    STREAM_WINDOW,
    U32,
    WINDOW_UPDATE,
    frame,
    settings_frame,
)
from pushgate._h2.hpack import NOT_INDEXED, FieldDecoder, FieldEncoder, HeaderBlockError

# frames queued before a write even within one loop turn: the peer starts on the first
# requests (or answers) while the rest are made, instead of both sides taking turns
FLUSH_FRAMES = 128


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
    """The framing layer of one connection; see the module docstring. ``not_indexed``:
    the header names this side always sends as literals (values unique to a message:
    the default is :data:`pushgate._h2.hpack.NOT_INDEXED`, a provider adds its own)."""

    is_client = True

    def __init__(self, not_indexed: Set[str] = NOT_INDEXED) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, Any] = {}  # sid -> StreamBase subclass
        self.closed = False  # no new streams (GOAWAY sent or received, failure)
        self.encoder = FieldEncoder(not_indexed=not_indexed)
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
                hi, lo, kind, flags, sid = FRAME_HEADER.unpack_from(buf, pos)
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
