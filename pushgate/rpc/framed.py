"""HubLink's framed transport: the link's protobuf messages on a plain TCP connection, each
a 4-byte big-endian length and the message's serialized bytes.

:class:`FramedLink` is one end of such a connection, an ``asyncio.Protocol``: received
bytes are cut into messages and handed to a callback in the order they came, within the
read that completed them (no task, queue or thread hand-off per message); :meth:`send`
writes a message straight to the transport. The router listens for hubs
(:mod:`pushgate.router.framedlink`), the hub connects (:mod:`pushgate.hub.routers`); which
messages go when is the same as on the gRPC stream (``proto/pushgate/rpc/pushgate.proto``,
``service HubLink``).

Why: on grpc.aio every message crosses between gRPC's poller thread and the event loop
and is framed as HTTP/2; ``python -m bench.link_micro`` measured ~160 µs of CPU per
message for that (docs/benchmarks.md), and a delivery between two clients takes up to
three HubLink messages (docs/design-notes.md §18).

Limits: a message over ``max_frame`` bytes (announced in its length) ends the connection
(:class:`FrameError`), as does one that does not parse. Writes are not paced: a peer
that stops reading makes the transport buffer grow until ``max_buffered`` bytes wait,
then the connection is aborted (its owner reconnects and re-syncs).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from google.protobuf.message import DecodeError

LENGTH = struct.Struct(">I")
MAX_FRAME = 64 << 20  # as the gRPC channels' max message length
MAX_BUFFERED = 256 << 20  # bytes written but not taken by the peer: then the link is cut
CLOSE_GRACE_S = 5.0  # close(): what is buffered gets this long to leave, then abort

M = TypeVar("M")


class FrameError(ConnectionError):
    """The peer sent what is not a framed HubLink message."""


class FramedLink(asyncio.Protocol, Generic[M]):
    """One end of a framed HubLink connection.

    Until :meth:`set_handler` is called, received messages wait in order
    (:meth:`next_message` takes them one at a time: the handshake); from then on each
    goes to the handler as soon as its last byte is read. An exception raised by the
    handler ends the connection with that exception. :attr:`lost` is done when the
    connection is gone: ``None`` for the peer's end (EOF) or :meth:`close`, else the error.
    """

    def __init__(self, parse: Callable[[bytes | memoryview], M], *, max_frame: int = MAX_FRAME,
                 max_buffered: int = MAX_BUFFERED) -> None:
        self._parse = parse
        self.max_frame = max_frame
        self.max_buffered = max_buffered
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buf = bytearray()
        self._handler: Callable[[M], None] | None = None
        self._early: list[M] = []
        self._waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        size = len(buf)
        pos = 0
        try:
            with memoryview(buf) as view:
                while size - pos >= 4:
                    (n,) = LENGTH.unpack_from(buf, pos)
                    if n > self.max_frame:
                        raise FrameError(f"a HubLink message of {n} bytes (at most "
                                         f"{self.max_frame})")
                    end = pos + 4 + n
                    if end > size:
                        break
                    try:
                        msg = self._parse(view[pos + 4:end])
                    except DecodeError as e:
                        raise FrameError(f"a HubLink message that does not parse: {e}") from None
                    pos = end
                    if self._handler is not None:
                        self._handler(msg)
                        if self.lost.done():
                            return
                    else:
                        self._early.append(msg)
                        self._wake()
        except Exception as e:
            self._fail(e)
            return
        del buf[:pos]

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost(None) follows

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            if exc is None:
                self.lost.set_result(None)
            else:
                self.lost.set_exception(exc)
                self.lost.exception()  # (retrieved: no "never retrieved" warning)
        self._wake()

    # -- the owner's side ------------------------------------------------------------------

    def send(self, msg: Any) -> None:
        """Write ``msg`` (a protobuf message) now; dropped once the connection is closing."""
        t = self.transport
        if t is None or t.is_closing():
            return
        data = msg.SerializeToString()
        t.write(LENGTH.pack(len(data)) + data)
        if t.get_write_buffer_size() > self.max_buffered:
            self._fail(ConnectionError(f"the peer took no data while {self.max_buffered} "
                                       "bytes waited"))

    async def next_message(self) -> M:
        """The next message received (before :meth:`set_handler`); raises
        ``ConnectionError`` when the connection is gone first."""
        while not self._early:
            if self.lost.done():
                self.lost.result()  # its error
                raise ConnectionError("the link ended")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._early.pop(0)

    def set_handler(self, handler: Callable[[M], None]) -> None:
        """From now on every message goes to ``handler``; those received meanwhile first."""
        early, self._early = self._early, []
        self._handler = handler
        try:
            for msg in early:
                handler(msg)
        except Exception as e:
            self._fail(e)

    def close(self, grace_s: float = CLOSE_GRACE_S) -> None:
        """End the connection after what is buffered was written (at most ``grace_s``:
        a peer that stopped reading is cut then)."""
        t = self.transport
        if t is None or t.is_closing():
            return
        t.close()
        if t.get_write_buffer_size():
            asyncio.get_running_loop().call_later(grace_s, t.abort)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: Exception) -> None:
        if not self.lost.done():
            self.lost.set_exception(exc)
            self.lost.exception()
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    def _wake(self) -> None:
        w, self._waiter = self._waiter, None
        if w is not None and not w.done():
            w.set_result(None)
