"""A small HTTP/2 client (h2 state machine on asyncio) for the provider requests.

Why not httpx: measured here, httpx/httpcore's HTTP/2 path cost ~1.5-2 ms of CPU per
request and topped out at ~200-550 requests/s on one connection (per-request locks,
event re-reading, a failed ``import sniffio`` per call), two orders of magnitude below
a campaign's needs. This client keeps one TLS connection (or a few), multiplexes up to
the server's ``MAX_CONCURRENT_STREAMS`` requests on it, and resolves each stream's
future when it ends: one small request costs ~100 µs here.

Errors: :class:`H2Error` for anything that leaves the request's outcome unknown
(connection refused or lost, GOAWAY, stream reset, timeout); callers retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

import h2.events
import h2.exceptions
import h2.settings

from pushgate._h2 import new_connection


class H2Error(Exception):
    """The request may or may not have reached the server; retry it."""


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class _Stream:
    future: asyncio.Future[Response]
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)


class _Connection(asyncio.Protocol):
    def __init__(self, max_streams: int) -> None:
        self.h2 = new_connection(client_side=True)
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        self.max_streams = max_streams  # ours; lowered to the server's setting
        self.slots = asyncio.Condition()
        self.window = asyncio.Event()
        self.closed = False
        self.ready = asyncio.get_running_loop().create_future()

    # -- protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop: no subclass
        self.h2.initiate_connection()
        self.h2.update_settings({h2.settings.SettingCodes.ENABLE_PUSH: 0,
                                 h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        self.h2.increment_flow_control_window(1 << 24)
        transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            self._fail(H2Error(f"HTTP/2 protocol error: {e}"))
            return
        for ev in events:
            if isinstance(ev, h2.events.ResponseReceived):
                s = self.streams.get(ev.stream_id)
                if s is not None:
                    for k, v in ev.headers:
                        key = k.decode() if isinstance(k, bytes) else str(k)
                        value = v.decode() if isinstance(v, bytes) else str(v)
                        if key == ":status":
                            s.status = int(value)
                        else:
                            s.headers[key] = value
            elif isinstance(ev, h2.events.DataReceived):
                s = self.streams.get(ev.stream_id)
                if s is not None:
                    s.body.extend(ev.data)
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                s = self.streams.pop(ev.stream_id, None)
                if s is not None and not s.future.done():
                    s.future.set_result(Response(s.status, s.headers, bytes(s.body)))
            elif isinstance(ev, h2.events.StreamReset):
                s = self.streams.pop(ev.stream_id, None)
                if s is not None and not s.future.done():
                    s.future.set_exception(H2Error(f"stream reset ({ev.error_code!r})"))
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                if not self.ready.done():
                    self.ready.set_result(None)
                change = ev.changed_settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS)
                if change is not None:
                    self.max_streams = min(self.max_streams, change.new_value)
            elif isinstance(ev, h2.events.WindowUpdated):
                self.window.set()
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.closed = True  # GOAWAY: no new streams; open ones above the last fail
                last = ev.last_stream_id or 0
                for sid in [sid for sid in self.streams if sid > last]:
                    s = self.streams.pop(sid)
                    if not s.future.done():
                        s.future.set_exception(H2Error("server sent GOAWAY"))
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(H2Error(f"connection lost: {exc or 'closed'}"))

    def _fail(self, err: H2Error) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(err)
        streams, self.streams = self.streams, {}
        for s in streams.values():
            if not s.future.done():
                s.future.set_exception(err)
        self.window.set()
        if self.transport is not None:
            self.transport.close()

    def _flush(self) -> None:
        out = self.h2.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    # -- requests ----------------------------------------------------------------------

    async def request(self, headers: list[tuple[str, str]], body: bytes) -> Response:
        async with self.slots:
            await self.slots.wait_for(lambda: len(self.streams) < self.max_streams
                                      or self.closed)
            if self.closed:
                raise H2Error("connection closed")
            sid = self.h2.get_next_available_stream_id()
            stream = _Stream(asyncio.get_running_loop().create_future())
            self.streams[sid] = stream
        try:
            self.h2.send_headers(sid, headers, end_stream=not body)
            view = memoryview(body)
            while view:
                room = min(self.h2.local_flow_control_window(sid), len(view),
                           self.h2.max_outbound_frame_size)
                if room <= 0:
                    self._flush()
                    self.window.clear()
                    await self.window.wait()
                    if self.closed:
                        raise H2Error("connection closed")
                    continue
                self.h2.send_data(sid, bytes(view[:room]), end_stream=room == len(view))
                view = view[room:]
            self._flush()
            return await stream.future
        except h2.exceptions.H2Error as e:
            raise H2Error(f"HTTP/2 error: {e}") from None
        finally:
            if self.streams.pop(sid, None) is not None and not self.closed:
                with contextlib.suppress(h2.exceptions.H2Error):
                    self.h2.reset_stream(sid)  # cancelled (timeout): free the stream
                    self._flush()
            async with self.slots:
                self.slots.notify()


class H2Client:
    """Requests to one ``https://host:port`` origin over ``connections`` HTTP/2
    connections (opened on first use, reopened after a failure)."""

    def __init__(self, url: str, verify: ssl.SSLContext | bool = True, *,
                 connections: int = 1, max_streams: int = 1000, timeout_s: float = 10.0) -> None:
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
        self._conns: list[_Connection | None] = [None] * max(1, connections)
        self._opening: list[asyncio.Lock] = [asyncio.Lock() for _ in self._conns]
        self._next = 0

    async def _connection(self) -> _Connection:
        i = self._next = (self._next + 1) % len(self._conns)
        conn = self._conns[i]
        if conn is not None and not conn.closed:
            return conn
        async with self._opening[i]:
            conn = self._conns[i]
            if conn is None or conn.closed:
                loop = asyncio.get_running_loop()
                try:
                    _t, conn = await loop.create_connection(
                        lambda: _Connection(self.max_streams), self.host, self.port,
                        ssl=self.ssl, server_hostname=self.host)
                    await conn.ready  # the server's SETTINGS (its stream limit)
                except (OSError, ssl.SSLError) as e:
                    raise H2Error(f"cannot connect to {self.authority}: {e}") from None
                self._conns[i] = conn
            return conn

    async def request(self, method: str, path: str, headers: dict[str, str],
                      body: bytes = b"") -> Response:
        """One request; :class:`H2Error` (retryable) when the outcome is unknown."""
        all_headers = [(":method", method), (":scheme", "https"),
                       (":authority", self.authority), (":path", self.base_path + path),
                       *headers.items()]
        if body:
            all_headers.append(("content-length", str(len(body))))
        try:
            async with asyncio.timeout(self.timeout_s):
                conn = await self._connection()
                return await conn.request(all_headers, body)
        except TimeoutError:
            raise H2Error("timeout") from None

    async def close(self) -> None:
        for i, conn in enumerate(self._conns):
            if conn is not None and conn.transport is not None:
                with contextlib.suppress(h2.exceptions.H2Error):
                    conn.h2.close_connection()
                    conn._flush()
                conn.transport.close()
            self._conns[i] = None
