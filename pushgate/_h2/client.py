"""The client role (:class:`H2Client`): the bridge's requests to the push providers
(APNs, FCM), on :mod:`pushgate._h2.connection`.

Why not httpx: measured here, httpx/httpcore's HTTP/2 path cost ~1.5-2 ms of CPU per
request and topped out at ~200-550 requests/s on one connection (per-request locks,
event re-reading, a failed ``import sniffio`` per call); the h2 state machine that an
earlier version of this module drove directly cost ~350 µs per request and response;
this one ~60 µs (docs/design-notes.md). It keeps one TLS connection (or a few), opens
up to the server's ``SETTINGS_MAX_CONCURRENT_STREAMS`` streams on each (further
requests wait for a free one) and resolves each stream's future when it ends.

Errors: :class:`H2Error` for anything that leaves the request's outcome unknown
(connection refused or lost, GOAWAY, stream reset, protocol error, timeout); callers
retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Set
from dataclasses import dataclass
from urllib.parse import urlsplit

from pushgate._h2.connection import H2Protocol, ProtocolViolation, StreamBase
from pushgate._h2.frames import CANCEL, MAX_STREAM_ID, PING, PROTOCOL_ERROR, frame
from pushgate._h2.hpack import NOT_INDEXED

__all__ = ["H2Client", "H2Error", "Response"]


class H2Error(Exception):
    """The request may or may not have reached the server; retry it. ``kind`` is a
    short fixed word for metrics labels and report reasons (the message has details:
    addresses, OS errors)."""

    def __init__(self, message: str, kind: str = "connection_error") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class _Stream(StreamBase):
    __slots__ = ("body", "deadline", "future", "headers", "status")

    def __init__(self, future: asyncio.Future[Response], send_window: int,
                 deadline: float) -> None:
        super().__init__(send_window)
        self.future = future
        self.deadline = deadline
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()


class _Connection(H2Protocol):
    is_client = True

    def __init__(self, max_streams: int, timeout_s: float = 10.0,
                 not_indexed: Set[str] = NOT_INDEXED) -> None:
        super().__init__(not_indexed)
        self.max_streams_cap = max_streams  # ours
        self.max_streams = max_streams  # in force: ours or the server's, the lower
        self.timeout_s = timeout_s
        self.next_sid = 1
        self.ready: asyncio.Future[None] = self.loop.create_future()
        # requests waiting for a stream; a woken one holds a granted slot until it runs
        self._waiters: deque[tuple[asyncio.Future[bool], float]] = deque()
        self._granted = 0
        self._sweep: asyncio.TimerHandle | None = None
        self.last_recv = self.loop.time()  # when the server last sent anything

    def data_received(self, data: bytes) -> None:
        self.last_recv = self.loop.time()
        super().data_received(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.start(transport, {})

    # -- framing hooks -----------------------------------------------------------------

    def on_settings(self) -> None:
        self.max_streams = min(self.max_streams_cap, self.peer_max_streams)
        if not self.ready.done():
            self.ready.set_result(None)
        self._wake()

    def on_headers(self, sid: int, fields: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        s = self.streams.get(sid)
        if s is None:
            return  # a stream we reset
        status = 0
        for name, value in fields:
            if name == b":status":
                if not value.isdigit() or len(value) != 3:
                    raise ProtocolViolation(PROTOCOL_ERROR, f"bad :status {value!r}")
                status = int(value)
        if 100 <= status < 200:
            return  # informational; the final response follows
        if status:
            s.status = status
        for name, value in fields:
            if name[:1] != b":":
                s.headers[name.decode("latin-1")] = value.decode("latin-1")
        if end_stream:
            self._complete(sid, s)

    def on_data(self, sid: int, stream: _Stream, data: bytes, end_stream: bool) -> None:
        stream.body += data
        if end_stream:
            self._complete(sid, stream)

    def on_reset(self, sid: int, code: int) -> None:
        what = "a bad WINDOW_UPDATE" if code < 0 else f"code {code}"
        self._end(sid, H2Error(f"stream reset by the server ({what})", "stream_reset"))

    def on_goaway(self, last_sid: int, code: int) -> None:
        # no new streams; the streams above its last id were not processed
        for sid in [sid for sid in self.streams if sid > last_sid]:
            self._end(sid, H2Error(f"server sent GOAWAY (code {code})", "goaway"))
        self._wake()
        self._close_when_idle()

    def on_failure(self, message: str) -> None:
        err = H2Error(message)
        if not self.ready.done():
            self.ready.set_exception(err)
            self.ready.exception()  # retrieved: no "never retrieved" warning
        for sid in list(self.streams):
            self._end(sid, err)
        while self._waiters:
            w, _ = self._waiters.popleft()
            if not w.done():
                w.set_result(False)
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None

    # -- streams -----------------------------------------------------------------------

    def _complete(self, sid: int, s: _Stream) -> None:
        del self.streams[sid]
        if s.pending is not None:  # answered before the whole body left: stop sending it
            s.pending = None  # and free the server's stream (RFC 9113 section 8.1)
            self.reset(sid, CANCEL)
            self.schedule_flush()
        self.unblock(sid)
        if not s.future.done():
            s.future.set_result(Response(s.status, s.headers, bytes(s.body)))
        self._wake()
        self._close_when_idle()

    def _end(self, sid: int, err: H2Error) -> None:
        s = self.streams.pop(sid, None)
        self.unblock(sid)
        if s is not None and not s.future.done():
            s.future.set_exception(err)
        self._wake()

    def _wake(self) -> None:
        """Grant the free streams to the oldest waiters; when closed, wake them all
        (each then fails)."""
        while self._waiters:
            if self.closed:
                w, _ = self._waiters.popleft()
                if not w.done():
                    w.set_result(False)
                continue
            if len(self.streams) + self._granted >= self.max_streams:
                return
            w, _ = self._waiters.popleft()
            if not w.done():
                w.set_result(True)
                self._granted += 1

    # Timeouts: one timer per connection, not one per request (an asyncio.timeout per
    # request was ~7 % of the bridge's CPU). A request fails with "timeout" between
    # timeout_s and 1.25 x timeout_s after it was made.

    def _arm(self) -> None:
        if self._sweep is None:
            self._sweep = self.loop.call_later(self.timeout_s / 4, self._expire)

    def _expire(self) -> None:
        self._sweep = None
        now = self.loop.time()
        expired = [sid for sid, s in self.streams.items() if s.deadline <= now]
        for sid in expired:
            self.reset(sid, CANCEL)
            self._end(sid, H2Error("timeout", "timeout"))
        silent = now - self.last_recv
        if expired and silent >= self.timeout_s:
            # not a byte from the server (not even the PING's ACK) for a whole timeout
            # while requests waited: the connection is dead (half-open, a wedged peer or
            # middlebox). Fail it, so that the next request opens a new connection
            # instead of timing out on this one until TCP gives up (~15 min).
            self.fail(f"no answer from the server for {silent:.0f} s")
            return
        if self.streams and silent >= self.timeout_s / 4:
            self._out.append(frame(PING, 0, 0, b"pushgate"))  # a live server ACKs it
        for w, deadline in list(self._waiters):
            if deadline <= now and not w.done():
                w.set_exception(H2Error("timeout", "timeout"))
        self.flush()
        if self.streams or self._waiters:
            self._arm()

    def _close_when_idle(self) -> None:
        if self.closed and not self.streams and self.transport is not None:
            self.flush()
            self.transport.close()

    # -- requests ----------------------------------------------------------------------

    async def request(self, method: str, authority: str, path: str, headers: dict[str, str],
                      body: bytes) -> Response:
        """Send a request and wait for the response (:class:`H2Error` "timeout" after
        ``timeout_s``, waiting for a free stream included)."""
        deadline = self.loop.time() + self.timeout_s
        while len(self.streams) + self._granted >= self.max_streams and not self.closed:
            waiter: asyncio.Future[bool] = self.loop.create_future()
            self._waiters.append((waiter, deadline))
            self._arm()
            try:
                granted = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.result():
                    self._granted -= 1  # granted just before the cancellation: pass it on
                    self._wake()
                raise
            if granted:
                self._granted -= 1
                break
        if self.closed:
            raise H2Error("connection closed")
        sid = self.next_sid
        self.next_sid += 2
        if self.next_sid > MAX_STREAM_ID:
            self.closed = True  # ids used up: the next request opens a new connection
        s = _Stream(self.loop.create_future(), self.peer_initial, deadline)
        self.streams[sid] = s
        if self._sweep is None:
            self._arm()
        fields = [(":method", method), (":scheme", "https"), (":authority", authority),
                  (":path", path), *headers.items()]
        if body:
            fields.append(("content-length", str(len(body))))
        self.send_headers(sid, fields, end_stream=not body)
        if body:
            self.send_body(sid, s, body)
        self.schedule_flush()
        try:
            return await s.future
        finally:
            if self.streams.get(sid) is s:  # cancelled: free the stream
                self.reset(sid, CANCEL)
                self.schedule_flush()
                self._end(sid, H2Error("cancelled"))


class H2Client:
    """Requests to one ``https://host:port`` origin over ``connections`` HTTP/2
    connections (opened on first use, reopened after a failure). ``not_indexed``: the
    request header names whose values are unique to a request (the provider's own
    added to :data:`pushgate._h2.hpack.NOT_INDEXED`), never put in the HPACK table."""

    def __init__(self, url: str, verify: ssl.SSLContext | bool = True, *,
                 connections: int = 1, max_streams: int = 1000, timeout_s: float = 10.0,
                 not_indexed: Set[str] = NOT_INDEXED) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"{url!r}: an https:// URL is required")
        self.host = parts.hostname
        self.port = parts.port or 443
        self.authority = parts.netloc
        self.base_path = parts.path.rstrip("/")
        ctx = verify if isinstance(verify, ssl.SSLContext) else ssl.create_default_context()
        if verify is False:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        self.ssl = ctx
        self.timeout_s = timeout_s
        self.max_streams = max_streams
        self.not_indexed = not_indexed
        self._conns: list[_Connection | None] = [None] * max(1, connections)
        self._opening: list[asyncio.Lock] = [asyncio.Lock() for _ in self._conns]
        self._next = 0

    async def _connection(self) -> _Connection:
        i = self._next = (self._next + 1) % len(self._conns)
        conn = self._conns[i]
        if conn is not None and not conn.closed:
            return conn
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._open(i)
        except TimeoutError:
            raise H2Error(f"timeout connecting to {self.authority}", "connect_timeout") from None

    async def _open(self, i: int) -> _Connection:
        async with self._opening[i]:
            conn = self._conns[i]
            if conn is None or conn.closed:
                loop = asyncio.get_running_loop()
                try:
                    transport, conn = await loop.create_connection(
                        lambda: _Connection(self.max_streams, self.timeout_s, self.not_indexed),
                        self.host, self.port, ssl=self.ssl, server_hostname=self.host)
                except (OSError, ssl.SSLError) as e:
                    raise H2Error(f"cannot connect to {self.authority}: {e}",
                                  "connect_failed") from None
                proto = transport.get_extra_info("ssl_object")
                if proto is not None and proto.selected_alpn_protocol() != "h2":
                    transport.close()
                    raise H2Error(f"{self.authority} does not speak HTTP/2 (ALPN)")
                await conn.ready  # the server's SETTINGS (its stream limit)
                self._conns[i] = conn
            return conn

    async def request(self, method: str, path: str, headers: dict[str, str],
                      body: bytes = b"") -> Response:
        """One request; :class:`H2Error` (retryable) when the outcome is unknown."""
        conn = await self._connection()
        return await conn.request(method, self.authority, self.base_path + path, headers, body)

    async def close(self) -> None:
        for i, conn in enumerate(self._conns):
            if conn is not None and conn.transport is not None:
                with contextlib.suppress(Exception):
                    conn.goaway()
                conn.transport.close()
            self._conns[i] = None
