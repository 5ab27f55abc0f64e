"""A raw websocket client for black-box tests of the server's websocket layer.

It writes the HTTP upgrade itself and then any bytes a test wants: well-formed frames
(built by ``websockets.frames.Frame.serialize``, the reference encoder) or malformed ones
built by hand (:func:`raw_frame`: any opcode, reserved bits, no mask, a lying length).
What the server sends back is parsed here, independently of the server's own library,
into :class:`Frame` objects kept in arrival order (:attr:`RawWs.frames`).

It is an ``asyncio.Protocol``, not a stream reader, on purpose: bytes that arrived
before a reset stay readable (a server that closes right after its close frame may
reset the connection when the client's next bytes arrive; the close frame must still
count), and :meth:`RawWs.pause_reading` stops reading at the socket so the kernel's
buffers fill (a client that never reads)::

    ws = await RawWs.connect(srv.port, f"/v1/ws?token={srv.token('alice')}")
    hello = await ws.recv_json()
    ws.write(raw_frame(OP_TEXT, b"\\xff", mask=True))
    code, reason = await ws.close_code()        # 1007
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.frames import Frame as LibFrame
from websockets.frames import Opcode

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
RSV1, RSV2, RSV3 = 0x4, 0x2, 0x1  # the ``rsv`` argument of raw_frame: bits 6, 5, 4 of byte 0
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TIMEOUT = 10.0


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """A well-formed, masked client frame, encoded by the ``websockets`` library."""
    return LibFrame(Opcode(opcode), payload, fin=fin).serialize(mask=True, extensions=[])


def raw_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
              mask: bool = True, length: int | None = None) -> bytes:
    """A client frame built by hand, so it can break any rule of RFC 6455 5.2: any
    4-bit ``opcode``, reserved bits ``rsv`` (RSV1 | RSV2 | RSV3), no mask, or a
    ``length`` field that differs from the payload's."""
    n = len(payload) if length is None else length
    head = bytearray([(0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0xF)])
    mbit = 0x80 if mask else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + _xor(payload, key)


def close_payload(code: int, reason: str | bytes = b"") -> bytes:
    return struct.pack("!H", code) + (reason.encode() if isinstance(reason, str) else reason)


def _xor(data: bytes, key: bytes) -> bytes:
    if not data:
        return b""
    n = len(data)
    k = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ k).to_bytes(n, "big")


@dataclass(frozen=True)
class Frame:
    """A frame the server sent."""

    fin: bool
    opcode: int
    rsv: int
    masked: bool
    payload: bytes

    @property
    def close(self) -> tuple[int, str]:
        """(code, reason) of a close frame; 1005 when it has no payload."""
        assert self.opcode == OP_CLOSE, self
        if len(self.payload) < 2:
            return 1005, ""
        return struct.unpack("!H", self.payload[:2])[0], self.payload[2:].decode(errors="replace")

    def json(self) -> Any:
        assert self.opcode == OP_TEXT and self.fin, f"not a whole text frame: {self}"
        return orjson.loads(self.payload)


class ConnectionEnded(AssertionError):
    """The connection ended (or timed out) where the test expected a frame."""


class RawWs(asyncio.Protocol):
    """One client TCP connection (see the module doc). Create it with :meth:`connect`
    (upgrade done) or :meth:`open` (TCP only: the test writes what it wants)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.head: bytes | None = None  # the HTTP response head, once complete
        self.frames: list[Frame] = []  # every frame received, in order
        self.received = 0  # bytes received (response head included)
        self.eof = False  # the server closed its side (FIN)
        self.lost = False  # the connection is gone (reset, or closed by both sides)
        self.error: BaseException | None = None
        self.auto_pong = True  # answer the server's pings like any client library
        self._buf = bytearray()
        self._read = 0  # frames handed out by next_frame
        self._changed = asyncio.Event()

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self._buf += data
        if self.head is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                self._changed.set()
                return
            self.head = bytes(self._buf[:end + 4])
            del self._buf[:end + 4]
        self._parse()
        self._changed.set()

    def eof_received(self) -> bool:
        self.eof = True
        self._changed.set()
        return True  # keep our side open: the test decides when to close it

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True
        self.error = exc
        self._changed.set()

    def _parse(self) -> None:
        buf = self._buf
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            n, pos = b1 & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, pos = struct.unpack_from("!H", buf, 2)[0], 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, pos = struct.unpack_from("!Q", buf, 2)[0], 10
            masked = bool(b1 & 0x80)
            key = b""
            if masked:
                if len(buf) < pos + 4:
                    return
                key, pos = bytes(buf[pos:pos + 4]), pos + 4
            if len(buf) < pos + n:
                return
            payload = bytes(buf[pos:pos + n])
            del buf[:pos + n]
            if masked:
                payload = _xor(payload, key)
            f = Frame(bool(b0 & 0x80), b0 & 0xF, b0 >> 4 & 7, masked, payload)
            self.frames.append(f)
            if f.opcode == OP_PING and self.auto_pong and not self.closing:
                self.write(frame(OP_PONG, f.payload))

    # -- connecting -----------------------------------------------------------------------

    @classmethod
    async def open(cls, port: int, *, host: str = "127.0.0.1", local_host: str | None = None,
                   rcvbuf: int | None = None) -> RawWs:
        """A TCP connection, nothing sent yet. ``rcvbuf`` sets SO_RCVBUF before
        connecting (a small receive window); ``local_host`` binds the client's address
        (any 127.x.y.z is loopback)."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if local_host is not None:
                sock.bind((local_host, 0))
            sock.setblocking(False)
            await loop.sock_connect(sock, (host, port))
            _, proto = await loop.create_connection(cls, sock=sock)
        except BaseException:
            sock.close()
            raise
        return proto

    @classmethod
    async def connect(cls, port: int, path: str, *, host: str = "127.0.0.1",
                      rcvbuf: int | None = None, timeout: float = TIMEOUT,
                      extra_headers: str = "") -> RawWs:
        """A connection upgraded to a websocket (101 and a correct accept key checked)."""
        ws = await cls.open(port, host=host, rcvbuf=rcvbuf)
        try:
            await ws.upgrade(path, host=f"{host}:{port}", timeout=timeout,
                             extra_headers=extra_headers)
        except BaseException:
            ws.abort()
            raise
        return ws

    @staticmethod
    def upgrade_request(path: str, host: str, key: str, extra_headers: str = "") -> bytes:
        return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extra_headers}\r\n").encode()

    async def upgrade(self, path: str, *, host: str, timeout: float = TIMEOUT,
                      extra_headers: str = "") -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self.write(self.upgrade_request(path, host, key, extra_headers))
        await self._wait(lambda: self.head is not None, timeout, "the upgrade response")
        assert self.head is not None
        lines = self.head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 101"), f"upgrade refused: {self.head!r}"
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        assert headers.get("sec-websocket-accept") == accept, self.head
        assert "sec-websocket-extensions" not in headers, "no extension was offered"

    # -- writing --------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def write(self, data: bytes) -> None:
        """Write raw bytes (ignored once the connection is closing or gone)."""
        if not self.closing and not self.lost:
            assert self.transport is not None
            self.transport.write(data)

    def send(self, opcode: int, payload: bytes = b"", *, fin: bool = True) -> None:
        self.write(frame(opcode, payload, fin=fin))

    def send_text(self, text: str | bytes) -> None:
        self.send(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_json(self, obj: Any) -> None:
        self.send(OP_TEXT, orjson.dumps(obj))

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        self.send(OP_CLOSE, close_payload(code, reason))

    def pause_reading(self) -> None:
        assert self.transport is not None
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        assert self.transport is not None
        self.transport.resume_reading()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- reading --------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        """The server closed the TCP connection (FIN or reset)."""
        return self.eof or self.lost

    @property
    def close_frame(self) -> Frame | None:
        return next((f for f in self.frames if f.opcode == OP_CLOSE), None)

    async def _wait(self, cond: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConnectionEnded(f"timed out after {timeout:g} s waiting for {what}; "
                                      f"frames: {self.frames[-5:]!r}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass

    async def wait_until(self, cond: Any, timeout: float, what: str) -> None:
        """Wait until ``cond()`` holds, looking again whenever something arrives."""
        await self._wait(cond, timeout, what)

    async def next_frame(self, timeout: float = TIMEOUT) -> Frame:
        """The next frame not handed out yet (control frames included)."""
        await self._wait(lambda: self._read < len(self.frames) or self.ended, timeout,
                         "a frame")
        if self._read >= len(self.frames):
            raise ConnectionEnded(f"connection ended ({self.error!r}) after {self.frames[-5:]!r}")
        self._read += 1
        return self.frames[self._read - 1]

    async def recv_json(self, timeout: float = TIMEOUT) -> Any:
        """The next text frame, decoded (pings and pongs are skipped; a close frame is
        an error)."""
        deadline = time.monotonic() + timeout
        while True:
            f = await self.next_frame(max(0.0, deadline - time.monotonic()))
            if f.opcode in (OP_PING, OP_PONG):
                continue
            if f.opcode == OP_CLOSE:
                raise ConnectionEnded(f"closed {f.close} while a text frame was expected")
            return f.json()

    async def recv_until(self, pred: Any, timeout: float = TIMEOUT) -> Any:
        """The next decoded text frame for which ``pred(frame)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.recv_json(max(0.0, deadline - time.monotonic()))
            if pred(msg):
                return msg

    async def close_code(self, timeout: float = TIMEOUT) -> tuple[int, str]:
        """Wait for the server's close frame; return its (code, reason). Frames before
        it stay in :attr:`frames`. Raises :class:`ConnectionEnded` when the connection
        ends without one."""
        await self._wait(lambda: self.close_frame is not None or self.ended, timeout,
                         "the server's close frame")
        f = self.close_frame
        if f is None:
            raise ConnectionEnded(f"connection ended ({self.error!r}) without a close frame; "
                                  f"last frames: {self.frames[-5:]!r}")
        return f.close

    async def wait_ended(self, timeout: float = TIMEOUT) -> None:
        """Wait until the server has closed the TCP connection."""
        await self._wait(lambda: self.ended, timeout, "the server to end the TCP connection")

    async def finish_close(self, timeout: float = TIMEOUT) -> tuple[int, str]:
        """What a correct client does on the server's close: read the close frame, echo
        its code, wait for the server to end the TCP connection. Returns (code, reason)."""
        code, reason = await self.close_code(timeout)
        self.write(frame(OP_CLOSE, close_payload(code) if code != 1005 else b""))
        await self.wait_ended(timeout)
        return code, reason
