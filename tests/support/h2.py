"""HTTP/2 test helpers for :mod:`pushgate._h2`: each role is tested against the ``h2``
library as the other peer, in memory. The protocol's transport is a
:class:`FakeTransport` that keeps what it writes; a link moves the bytes both ways
until nothing moves. No sockets, no TLS, no timers: fast and deterministic.

* the wire: frames built and parsed here with :mod:`struct`, not with the code under
  test, so that a mistake in it cannot hide in the tests;
* our client (:mod:`pushgate._h2.client`) against :class:`PeerServer`:
  :func:`client_link`, :func:`drain`, :func:`got`, :func:`fails`;
* our server (:mod:`pushgate._h2.server`) against :class:`PeerClient`:
  :func:`server_link`, :class:`Handler`.

Both links encode their headers as the APNs provider and the fake APNs do (their
``not_indexed`` names): the traffic here is APNs-shaped.
"""

from __future__ import annotations

import asyncio
import random
import string
import struct
from collections.abc import Callable
from typing import Any

import h2.events
import h2.settings
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.settings import SettingCodes

from pushgate._h2 import client as h2client
from pushgate._h2 import server as h2server
from pushgate._h2.client import H2Error, Response
from pushgate._h2.server import Reply, Request
from pushgate.fakes.apns import NOT_INDEXED as FAKE_APNS_NOT_INDEXED
from pushgate.router.bridge.apns import NOT_INDEXED as APNS_NOT_INDEXED

# --- the wire ----------------------------------------------------------------------------

AUTHORITY = "api.push.example.com"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

Frame = tuple[int, int, int, bytes]


def raw_frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return struct.pack(">BHBBL", n >> 16, n & 0xFFFF, kind, flags, sid) + payload


def parse_frames(raw: bytes) -> list[Frame]:
    """(type, flags, stream id, payload) of each frame in ``raw`` (after the preface,
    if it starts with one)."""
    if raw.startswith(PREFACE):
        raw = raw[len(PREFACE):]
    out, pos = [], 0
    while pos < len(raw):
        hi, lo, kind, flags, sid = struct.unpack_from(">BHBBL", raw, pos)
        n = (hi << 16) | lo
        out.append((kind, flags, sid & 0x7FFFFFFF, raw[pos + 9:pos + 9 + n]))
        pos += 9 + n
    assert pos == len(raw), "truncated frame"
    return out


def goaways(frames: list[Frame]) -> list[tuple[int, int]]:
    """(last stream id, error code) of each GOAWAY."""
    return [struct.unpack_from(">LL", p) for k, _, s, p in frames if k == GOAWAY and s == 0]


class FakeTransport:
    """What the protocol writes, kept; ``close()`` reports ``connection_lost`` on the
    next loop iteration, as asyncio's transports do."""

    def __init__(self) -> None:
        self.pending = bytearray()  # not yet given to the peer
        self.log = bytearray()  # everything written
        self.writes = 0
        self.closing = False
        self.protocol: asyncio.Protocol | None = None

    @classmethod
    def attach(cls, conn: asyncio.Protocol) -> FakeTransport:
        """A transport for ``conn``, made and given to it (``connection_made``)."""
        transport = cls()
        transport.protocol = conn
        conn.connection_made(transport)  # type: ignore[arg-type]
        return transport

    def write(self, data: bytes) -> None:
        assert not self.closing, "write after close"
        self.writes += 1
        self.pending += data
        self.log += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            if self.protocol is not None:
                asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def take(self) -> bytes:
        data = bytes(self.pending)
        self.pending.clear()
        return data


class _Link:
    """One of our connections and an ``h2`` peer, joined in memory."""

    def _move(self) -> bool:
        """Hand over what each side wrote; whether anything moved."""
        raise NotImplementedError

    async def settle(self, rounds: int = 3_000) -> None:
        """Let the loop run (the protocol's scheduled flushes, the request tasks) and
        move bytes both ways, until nothing moved three times in a row."""
        idle = 0
        for _ in range(rounds):
            for _ in range(4):
                await asyncio.sleep(0)
            idle = 0 if self._move() else idle + 1
            if idle >= 3:
                return
        raise AssertionError("the link did not settle")


class _Peer:
    """What both ``h2`` peers share: the events seen, and bodies sent within the
    other side's flow-control windows."""

    def __init__(self, client_side: bool, initial: dict[Any, int]) -> None:
        self.h2 = H2Connection(H2Configuration(client_side=client_side, header_encoding=None))
        self.h2.local_settings = h2.settings.Settings(client=client_side, initial_values=initial)
        self.h2.max_inbound_frame_size = self.h2.local_settings.max_frame_size
        self.h2.initiate_connection()
        self.events: list[h2.events.Event] = []
        self.unacked: dict[int, int] = {}  # DATA not acknowledged (ack_data False)
        self._outgoing: dict[int, list[Any]] = {}  # sid -> [memoryview, end, trailers]

    def _send_pending(self) -> None:
        """Bodies, within the windows (more after WINDOW_UPDATEs)."""
        for sid, item in list(self._outgoing.items()):
            view, end, trailers = item
            while view:
                room = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
                if room <= 0:
                    break
                chunk, view = view[:room], view[room:]
                self.h2.send_data(sid, bytes(chunk), end_stream=end and not view and not trailers)
            item[0] = view
            if not view:
                del self._outgoing[sid]
                if trailers:
                    self.h2.send_headers(sid, trailers, end_stream=True)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


# --- our client, the h2 library as the server ----------------------------------------------

Responder = Callable[["PeerServer", int], None]


class PeerServer(_Peer):
    """An ``h2`` server connection that records what it sees and, by default, answers
    every request once its body has ended (status 200, the body echoed)."""

    def __init__(self, settings: dict[int, int] | None = None, *, ack_data: bool = True,
                 respond: Responder | None = None) -> None:
        super().__init__(False, {SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                                 SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 16, **(settings or {})})
        self.ack_data = ack_data
        self.respond = respond if respond is not None else echo_response
        self.auto = True  # answer ended streams (else they wait in self.ended)
        self.requests: dict[int, list[tuple[bytes, bytes]]] = {}
        self.bodies: dict[int, bytearray] = {}
        self.data_frames: dict[int, list[int]] = {}  # sizes of the DATA received
        self.ended: list[int] = []  # streams whose request ended, not answered yet
        self.max_open = 0
        self.reset: set[int | None] = set()  # streams the client reset

    def receive(self, data: bytes) -> None:
        for ev in self.h2.receive_data(data):
            self.events.append(ev)
            self.max_open = max(self.max_open, self.h2.open_inbound_streams)
            if isinstance(ev, h2.events.RequestReceived):
                assert ev.stream_id is not None and ev.headers is not None
                self.requests[ev.stream_id] = list(ev.headers)
                self.bodies[ev.stream_id] = bytearray()
            elif isinstance(ev, h2.events.DataReceived):
                assert ev.stream_id is not None and ev.data is not None
                self.bodies[ev.stream_id] += ev.data
                self.data_frames.setdefault(ev.stream_id, []).append(len(ev.data))
                n = ev.flow_controlled_length or 0
                if self.ack_data:
                    self.h2.acknowledge_received_data(n, ev.stream_id)
                else:
                    self.unacked[ev.stream_id] = self.unacked.get(ev.stream_id, 0) + n
            elif isinstance(ev, h2.events.StreamEnded):
                assert ev.stream_id is not None
                self.ended.append(ev.stream_id)
            elif isinstance(ev, h2.events.WindowUpdated):
                self._send_pending()
            elif isinstance(ev, h2.events.StreamReset):
                self.reset.add(ev.stream_id)
                self._outgoing.pop(ev.stream_id, None)
        if self.auto:
            self.answer_all()

    def acknowledge(self) -> None:
        for sid, n in self.unacked.items():
            if n:
                self.h2.acknowledge_received_data(n, sid)
        self.unacked.clear()

    def answer_all(self) -> None:
        ended, self.ended = self.ended, []
        for sid in ended:
            if sid not in self.reset:
                self.respond(self, sid)

    def send_response(self, sid: int, status: int = 200,
                      headers: list[tuple[str, str]] | None = None, body: bytes = b"",
                      trailers: list[tuple[str, str]] | None = None) -> None:
        fields = [(":status", str(status)), *(headers or [])]
        self.h2.send_headers(sid, fields, end_stream=not body and not trailers)
        if body or trailers:
            self._outgoing[sid] = [memoryview(body), True, trailers]
            self._send_pending()

    def headers(self, sid: int) -> dict[bytes, bytes]:
        return dict(self.requests[sid])


def echo_response(server: PeerServer, sid: int) -> None:
    server.send_response(sid, 200, [("x-sid", str(sid))], bytes(server.bodies[sid]))


class ClientLink(_Link):
    """Our client connection and an h2 server."""

    def __init__(self, conn: h2client._Connection, transport: FakeTransport,
                 server: PeerServer) -> None:
        self.conn, self.transport, self.server = conn, transport, server

    def _move(self) -> bool:
        moved = False
        data = self.transport.take()
        if data:
            self.server.receive(data)
            moved = True
        back = self.server.h2.data_to_send()
        if back and not self.transport.closing:  # a closed transport reads nothing more
            self.conn.data_received(back)
            moved = True
        return moved

    def inject(self, raw: bytes) -> None:
        """Bytes to the client as if from the server (after what h2 has queued)."""
        back = self.server.h2.data_to_send()
        self.conn.data_received(back + raw)

    def request(self, path: str = "/3/device/abc", headers: dict[str, str] | None = None,
                body: bytes = b"{}", method: str = "POST") -> asyncio.Task[Response]:
        return asyncio.create_task(
            self.conn.request(method, AUTHORITY, path, headers or {}, body))


async def client_link(settings: dict[int, int] | None = None, *, max_streams: int = 1000,
                      **kwargs: Any) -> ClientLink:
    server = PeerServer(settings, **kwargs)
    conn = h2client._Connection(max_streams, not_indexed=APNS_NOT_INDEXED)
    link = ClientLink(conn, FakeTransport.attach(conn), server)
    await link.settle()
    assert conn.ready.done() and conn.ready.exception() is None
    return link


async def drain(link: ClientLink, *tasks: asyncio.Task[Response], rounds: int = 300) -> None:
    """Let the server acknowledge what it received until ``tasks`` are done."""
    for _ in range(rounds):
        if all(t.done() for t in tasks):
            return
        link.server.acknowledge()
        await link.settle()
    raise AssertionError("the requests did not complete")


async def got(task: asyncio.Task[Response]) -> Response:
    """The task's response (a failing test fails rather than hangs)."""
    async with asyncio.timeout(5):
        return await asyncio.shield(task)


async def fails(task: asyncio.Task[Response]) -> H2Error:
    with pytest.raises(H2Error) as info:
        await got(task)
    return info.value


# --- our server, the h2 library as the client ----------------------------------------------


def echo_reply(req: Request) -> Reply:
    """What the handler got, sent back: method, path, topic, body length, the body."""
    return 200, {"x-method": req.method, "x-path": req.path,
                 "x-topic": req.headers.get("apns-topic", "-"),
                 "x-length": str(len(req.body))}, req.body


class Handler:
    def __init__(self, reply: Callable[[Request], Reply] | None = None) -> None:
        self.requests: list[Request] = []
        self.reply = reply or echo_reply

    def __call__(self, req: Request) -> Reply:
        self.requests.append(req)
        return self.reply(req)

    def by_path(self) -> dict[str, Request]:
        return {r.path: r for r in self.requests}


class PeerClient(_Peer):
    """An ``h2`` client connection that records what it receives and, by default,
    acknowledges the DATA it gets (``ack_data``)."""

    def __init__(self, settings: dict[SettingCodes, int] | None = None) -> None:
        # ENABLE_PUSH 0, as a client that wants no push says (h2's default, 1, is accepted
        # too: test_client_default_enable_push_is_accepted)
        super().__init__(True, {SettingCodes.ENABLE_PUSH: 0, **(settings or {})})
        self.ack_data = True
        self.log = bytearray()  # everything the client sent
        self.responses: dict[int, list[tuple[bytes, bytes]]] = {}
        self.trailers: dict[int, list[tuple[bytes, bytes]]] = {}
        self.bodies: dict[int, bytearray] = {}
        self.chunks: dict[int, list[int]] = {}  # sizes of the DATA received
        self.ended: list[int] = []
        self.resets: dict[int, int] = {}  # stream -> error code of the server's RST_STREAM

    def send(self) -> bytes:
        data = self.h2.data_to_send()
        self.log += data
        return data

    def receive(self, data: bytes) -> None:
        for ev in self.h2.receive_data(data):
            self.events.append(ev)
            sid = getattr(ev, "stream_id", None)
            if isinstance(ev, h2.events.ResponseReceived):
                assert sid is not None and ev.headers is not None
                self.responses[sid] = list(ev.headers)
                self.bodies[sid] = bytearray()
            elif isinstance(ev, h2.events.TrailersReceived):
                assert sid is not None and ev.headers is not None
                self.trailers[sid] = list(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                assert sid is not None and ev.data is not None
                self.bodies[sid] += ev.data
                self.chunks.setdefault(sid, []).append(len(ev.data))
                n = ev.flow_controlled_length or 0
                if self.ack_data:
                    self.h2.acknowledge_received_data(n, sid)
                else:
                    self.unacked[sid] = self.unacked.get(sid, 0) + n
            elif isinstance(ev, h2.events.StreamEnded):
                assert sid is not None
                self.ended.append(sid)
            elif isinstance(ev, h2.events.StreamReset):
                assert sid is not None and ev.error_code is not None
                self.resets[sid] = ev.error_code
                self._outgoing.pop(sid, None)
            elif isinstance(ev, h2.events.WindowUpdated):
                self._send_pending()

    def acknowledge(self) -> None:
        for sid, n in self.unacked.items():
            if n and sid not in self.resets:
                self.h2.acknowledge_received_data(n, sid)
        self.unacked.clear()

    def lift_stream_limit(self, limit: int = 1000) -> None:
        """Let h2 open more streams than the server's MAX_CONCURRENT_STREAMS (h2 refuses
        to, with TooManyStreamsError): as if its SETTINGS had said ``limit``."""
        self.h2.remote_settings[SettingCodes.MAX_CONCURRENT_STREAMS] = limit
        self.h2.remote_settings.acknowledge()

    def request(self, path: str = "/3/device/abc", headers: list[tuple[Any, Any]] | None = None,
                body: bytes = b"", method: str = "POST", *, end: bool = True,
                trailers: list[tuple[str, str]] | None = None, sid: int | None = None) -> int:
        if sid is None:
            sid = self.h2.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", "https"), (":authority", AUTHORITY),
                  (":path", path), *(headers or [])]
        self.h2.send_headers(sid, fields, end_stream=end and not body and not trailers)
        if body or trailers:
            self._outgoing[sid] = [memoryview(body), end, trailers]
            self._send_pending()
        return sid

    def status(self, sid: int) -> int:
        return int(dict(self.responses[sid])[b":status"])

    def headers(self, sid: int) -> dict[str, str]:
        """The response's headers (no pseudo-headers), as text."""
        return {k.decode(): v.decode("latin-1") for k, v in self.responses[sid]
                if not k.startswith(b":")}


class ServerLink(_Link):
    """Our server connection and an h2 client."""

    def __init__(self, conn: h2server._Connection, transport: FakeTransport,
                 client: PeerClient, handler: Handler, live: set[h2server._Connection]) -> None:
        self.conn, self.transport, self.client = conn, transport, client
        self.handler, self.live = handler, live

    def _move(self) -> bool:
        moved = False
        data = self.client.send()
        if data and not self.transport.closing:  # a closed transport reads nothing more
            self.conn.data_received(data)
            moved = True
        back = self.transport.take()
        if back:
            self.client.receive(back)
            moved = True
        return moved

    def inject(self, raw: bytes) -> None:
        """Bytes to the server as if from the client (after what h2 has queued)."""
        self.conn.data_received(self.client.send() + raw)

    def server_frames(self, since: int = 0) -> list[Frame]:
        return parse_frames(bytes(self.transport.log[since:]))

    async def drain(self, done: Callable[[], bool], rounds: int = 500) -> None:
        """Let the client acknowledge what it received until ``done()``."""
        for _ in range(rounds):
            if done():
                return
            self.client.acknowledge()
            await self.settle()
        raise AssertionError("the responses did not complete")


def server_connection(handler: Handler, max_streams: int = 10,
                      live: set[h2server._Connection] | None = None) -> h2server._Connection:
    """A server connection as the fake APNs makes them (its ``not_indexed`` names)."""
    return h2server._Connection(handler, max_streams, set() if live is None else live,
                                not_indexed=FAKE_APNS_NOT_INDEXED)


async def server_link(settings: dict[SettingCodes, int] | None = None, *,
                      max_streams: int = 100,
                      reply: Callable[[Request], Reply] | None = None) -> ServerLink:
    handler = Handler(reply)
    live: set[h2server._Connection] = set()
    conn = server_connection(handler, max_streams, live)
    transport = FakeTransport.attach(conn)
    link = ServerLink(conn, transport, PeerClient(settings), handler, live)
    await link.settle()
    assert conn.settings_seen and not transport.closing
    return link


def sid_paths(link: ServerLink) -> list[str]:
    """The paths of the requests the handler got, in order."""
    return [r.path for r in link.handler.requests]


def big_reply(size: int, seed: int = 4) -> Callable[[Request], Reply]:
    body = random.Random(seed).randbytes(size)
    return lambda req: (200, {"content-type": "application/octet-stream"}, body)


async def held_response(window: int, size: int) -> tuple[ServerLink, bytes, int]:
    """A server link whose h2 client allows ``window`` bytes per stream and credits no
    DATA back, with one request open and its first ``window`` bytes arrived: the link,
    the whole response body and the stream id."""
    link = await server_link({SettingCodes.INITIAL_WINDOW_SIZE: window}, reply=big_reply(size))
    body = link.handler.reply(Request("", "", {}, b""))[2]
    link.client.ack_data = False
    sid = link.client.request()
    await link.settle()
    return link, body, sid


def randtext(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits + "-_.~!*+/=", k=n))
