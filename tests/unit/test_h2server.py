"""Interop of the fake providers' HTTP/2 server (``pushgate.fakes._h2server._Connection``,
the server role on ``pushgate._h2wire``) with the ``h2`` library as the client, in
memory: the server's transport is a fake that collects what it writes, an ``h2`` client
connection decodes it, and the client's bytes are fed to ``data_received``. No sockets,
no TLS, no timers: fast and deterministic."""

from __future__ import annotations

import asyncio
import random
import string
import struct
from collections.abc import Callable
from typing import Any

import h2.events
import h2.exceptions
import h2.settings
import hpack
import hpack.hpack
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from pushgate._h2wire import CONN_WINDOW_BONUS, STREAM_WINDOW, FieldEncoder, hpack_int
from pushgate.fakes._h2server import Reply, Request, _Connection

AUTHORITY = "api.push.example.com"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
GET_BLOCK = b"\x82\x87\x84"  # :method GET, :scheme https, :path / (static table only)

Frame = tuple[int, int, int, bytes]


def raw_frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return struct.pack(">BHBBL", n >> 16, n & 0xFFFF, kind, flags, sid) + payload


def parse_frames(raw: bytes) -> list[Frame]:
    """(type, flags, stream id, payload) of each frame in ``raw``."""
    out, pos = [], 0
    while pos < len(raw):
        hi, lo, kind, flags, sid = struct.unpack_from(">BHBBL", raw, pos)
        n = (hi << 16) | lo
        out.append((kind, flags, sid & 0x7FFFFFFF, raw[pos + 9:pos + 9 + n]))
        pos += 9 + n
    assert pos == len(raw), "truncated frame"
    return out


def goaways(frames: list[Frame]) -> list[tuple[int, int]]:
    return [struct.unpack_from(">LL", p) for k, _, s, p in frames if k == GOAWAY and s == 0]


class FakeTransport:
    """What the server writes, kept; ``close()`` reports ``connection_lost`` on the next
    loop iteration, as asyncio's transports do."""

    def __init__(self) -> None:
        self.pending = bytearray()  # not yet given to the client
        self.log = bytearray()  # everything written
        self.writes = 0
        self.closing = False
        self.protocol: asyncio.Protocol | None = None

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


def echo(req: Request) -> Reply:
    """What the handler got, sent back: method, path, topic, body length, the body."""
    return 200, {"x-method": req.method, "x-path": req.path,
                 "x-topic": req.headers.get("apns-topic", "-"),
                 "x-length": str(len(req.body))}, req.body


class Handler:
    def __init__(self, reply: Callable[[Request], Reply] | None = None) -> None:
        self.requests: list[Request] = []
        self.reply = reply or echo

    def __call__(self, req: Request) -> Reply:
        self.requests.append(req)
        return self.reply(req)

    def by_path(self) -> dict[str, Request]:
        return {r.path: r for r in self.requests}


class Client:
    """An ``h2`` client connection that records what it receives and, by default,
    acknowledges the DATA it gets (``ack_data``)."""

    def __init__(self, settings: dict[SettingCodes, int] | None = None) -> None:
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        # ENABLE_PUSH 0: h2's default (1) is refused by the server (see the xfail below)
        initial = {SettingCodes.ENABLE_PUSH: 0, **(settings or {})}
        self.h2.local_settings = h2.settings.Settings(client=True, initial_values=initial)
        self.h2.max_inbound_frame_size = self.h2.local_settings.max_frame_size
        self.h2.initiate_connection()
        self.ack_data = True
        self.log = bytearray()  # everything the client sent
        self.events: list[h2.events.Event] = []
        self.responses: dict[int, list[tuple[bytes, bytes]]] = {}
        self.trailers: dict[int, list[tuple[bytes, bytes]]] = {}
        self.bodies: dict[int, bytearray] = {}
        self.chunks: dict[int, list[int]] = {}  # sizes of the DATA received
        self.ended: list[int] = []
        self.resets: dict[int, int] = {}  # stream -> error code of the server's RST_STREAM
        self.unacked: dict[int, int] = {}
        self._outgoing: dict[int, list[Any]] = {}  # sid -> [memoryview, end, trailers]

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

    def _send_pending(self) -> None:
        """Request bodies, within the server's windows (more after its WINDOW_UPDATEs)."""
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

    def status(self, sid: int) -> int:
        return int(dict(self.responses[sid])[b":status"])

    def headers(self, sid: int) -> dict[str, str]:
        """The response's headers (no pseudo-headers), as text."""
        return {k.decode(): v.decode("latin-1") for k, v in self.responses[sid]
                if not k.startswith(b":")}

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


class Link:
    """A server connection and an h2 client, joined in memory."""

    def __init__(self, conn: _Connection, transport: FakeTransport, client: Client,
                 handler: Handler, live: set[_Connection]) -> None:
        self.conn, self.transport, self.client = conn, transport, client
        self.handler, self.live = handler, live

    async def settle(self, rounds: int = 3_000) -> None:
        """Move bytes both ways (letting the loop run the server's scheduled flushes)
        until nothing moves."""
        idle = 0
        for _ in range(rounds):
            for _ in range(4):
                await asyncio.sleep(0)
            moved = False
            data = self.client.send()
            if data and not self.transport.closing:  # a closed transport reads nothing more
                self.conn.data_received(data)
                moved = True
            back = self.transport.take()
            if back:
                self.client.receive(back)
                moved = True
            idle = 0 if moved else idle + 1
            if idle >= 3:
                return
        raise AssertionError("the link did not settle")

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


async def connect(settings: dict[SettingCodes, int] | None = None, *, max_streams: int = 100,
                  reply: Callable[[Request], Reply] | None = None) -> Link:
    handler = Handler(reply)
    live: set[_Connection] = set()
    conn = _Connection(handler, max_streams, live)
    transport = FakeTransport()
    transport.protocol = conn
    conn.connection_made(transport)  # type: ignore[arg-type]
    link = Link(conn, transport, Client(settings), handler, live)
    await link.settle()
    assert conn.settings_seen and not transport.closing
    return link


def randtext(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits + "-_.~!*+/=", k=n))


# --- 1. preface and SETTINGS ------------------------------------------------------------


async def test_server_settings_and_acks() -> None:
    link = await connect(max_streams=7)
    assert link.live == {link.conn}
    frames = link.server_frames()
    # the server sends no preface: its first frame is SETTINGS
    assert frames[0][0] == SETTINGS and frames[0][2] == 0 and not frames[0][1] & ACK
    (changed,) = link.client.of(h2.events.RemoteSettingsChanged)
    values = {k: v.new_value for k, v in changed.changed_settings.items()}
    assert values[SettingCodes.MAX_CONCURRENT_STREAMS] == 7
    assert values[SettingCodes.INITIAL_WINDOW_SIZE] == STREAM_WINDOW >= 1 << 20
    assert values.get(SettingCodes.ENABLE_PUSH, 0) == 0  # a server may only send 0
    assert link.client.h2.remote_settings.max_concurrent_streams == 7
    # and a larger connection window than the default
    (window,) = link.client.of(h2.events.WindowUpdated)
    assert (window.stream_id, window.delta) == (0, CONN_WINDOW_BONUS)
    assert link.client.h2.outbound_flow_control_window == 65_535 + CONN_WINDOW_BONUS
    # the client's SETTINGS were acknowledged, and so is a later one
    assert len(link.client.of(h2.events.SettingsAcknowledged)) == 1
    link.client.h2.update_settings({SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 17})
    await link.settle()
    assert len(link.client.of(h2.events.SettingsAcknowledged)) == 2
    assert not link.transport.closing


async def test_preface_and_frames_arriving_byte_by_byte() -> None:
    handler = Handler()
    live: set[_Connection] = set()
    conn = _Connection(handler, 10, live)
    transport = FakeTransport()
    transport.protocol = conn
    conn.connection_made(transport)  # type: ignore[arg-type]
    client = Client()
    client.request("/slow", [("apns-topic", "t")], b"byte by byte")
    for i, b in enumerate(client.send()):
        conn.data_received(bytes([b]))
        assert not transport.closing, f"closed at byte {i}"
    client.receive(transport.take())
    await asyncio.sleep(0)
    client.receive(transport.take())
    assert client.of(h2.events.SettingsAcknowledged)
    assert handler.requests == [Request("POST", "/slow", {
        ":method": "POST", ":scheme": "https", ":authority": AUTHORITY, ":path": "/slow",
        "apns-topic": "t"}, b"byte by byte")]
    assert client.ended == [1] and bytes(client.bodies[1]) == b"byte by byte"


NOT_PREFACES = {
    "http/1.1": b"GET /3/device/abc HTTP/1.1\r\nHost: api.push.example.com\r\n\r\n",
    "tls hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(40)),
    "preface typo": PREFACE[:-1] + b"\r" + raw_frame(SETTINGS, 0, 0),
    "settings first": raw_frame(SETTINGS, 0, 0) + b"\0" * 20,
}


@pytest.mark.parametrize("name", list(NOT_PREFACES))
async def test_not_a_preface_gets_goaway_and_close(name: str) -> None:
    handler = Handler()
    live: set[_Connection] = set()
    conn = _Connection(handler, 10, live)
    transport = FakeTransport()
    transport.protocol = conn
    conn.connection_made(transport)  # type: ignore[arg-type]
    start = len(transport.log)
    conn.data_received(NOT_PREFACES[name])
    assert transport.closing
    assert goaways(parse_frames(bytes(transport.log[start:]))) == [(0, ErrorCodes.PROTOCOL_ERROR)]
    assert not handler.requests
    await asyncio.sleep(0)  # connection_lost from the closed transport
    assert not live


async def test_short_non_preface_is_refused_at_once() -> None:
    conn = _Connection(Handler(), 10, set())
    transport = FakeTransport()
    transport.protocol = conn
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(b"GET / HTTP/1.0\r\n\r\n")  # 18 bytes; the client now waits
    assert transport.closing


async def test_client_default_enable_push_is_accepted() -> None:
    link = await connect({SettingCodes.ENABLE_PUSH: 1})
    sid = link.client.request("/x", body=b"y")
    await link.settle()
    assert link.client.status(sid) == 200


# --- 2. requests -------------------------------------------------------------------------


async def test_get_without_body() -> None:
    link = await connect(reply=lambda req: (204, {"x-seen": req.method + " " + req.path}, b""))
    sid = link.client.request("/v1/ping?x=1", [("accept", "*/*"), ("User-Agent", "t/1"),
                                               ("x-bytes", b"caf\xe9")], method="GET")
    since = len(link.transport.log)
    await link.settle()
    (req,) = link.handler.requests
    assert req == Request("GET", "/v1/ping?x=1", {
        ":method": "GET", ":scheme": "https", ":authority": AUTHORITY, ":path": "/v1/ping?x=1",
        "accept": "*/*", "user-agent": "t/1", "x-bytes": "caf\xe9"}, b"")
    assert link.client.status(sid) == 204
    assert link.client.headers(sid) == {"x-seen": "GET /v1/ping?x=1"}  # no content-length
    assert link.client.ended == [sid] and link.client.bodies[sid] == b""
    # END_STREAM on the HEADERS frame itself
    assert [(k, f) for k, f, s, _ in link.server_frames(since) if s == sid] == [
        (HEADERS, END_HEADERS | END_STREAM)]
    assert not link.conn.streams


async def test_post_body_over_several_and_padded_data_frames() -> None:
    link = await connect()
    c = link.client
    sid = c.request("/3/device/ff", [("apns-topic", "com.example"),
                                     ("content-type", "application/json")], end=False)
    parts = [(b'{"aps":', None), (b'{"alert":', 0), (b"", 17), (b'"hello"', 255),
             (b"x" * 10_000, 3), (b"}}", None)]
    for i, (chunk, pad) in enumerate(parts):
        c.h2.send_data(sid, chunk, end_stream=i == len(parts) - 1, pad_length=pad)
    await link.settle()
    body = b"".join(p for p, _ in parts)
    (req,) = link.handler.requests
    assert req.body == body and req.method == "POST" and req.path == "/3/device/ff"
    assert req.headers["content-type"] == "application/json"
    assert c.status(sid) == 200
    assert c.headers(sid) == {"x-method": "POST", "x-path": "/3/device/ff",
                              "x-topic": "com.example", "x-length": str(len(body)),
                              "content-length": str(len(body))}
    assert bytes(c.bodies[sid]) == body and c.ended == [sid]


async def test_request_body_over_the_stream_window_is_credited() -> None:
    """3 MiB from the client: more than the 1 MiB stream window the server advertised,
    so the server must send WINDOW_UPDATEs."""
    link = await connect(reply=lambda req: (200, {"x-length": str(len(req.body))}, b""))
    body = random.Random(1).randbytes(3 << 20)
    sid = link.client.request("/big", body=body)
    await link.settle()
    assert link.client.headers(sid)["x-length"] == str(len(body))
    assert link.handler.requests[0].body == body
    assert any(isinstance(e, h2.events.WindowUpdated) and e.stream_id == sid
               for e in link.client.events)


def apns_headers(i: int, auth: str) -> list[tuple[str, str]]:
    return [("authorization", auth), ("apns-topic", "com.example.app"),
            ("apns-push-type", "alert" if i % 5 else "background"),
            ("apns-id", f"{i:08x}-0000-4000-8000-{i:012x}"),
            ("apns-expiration", str(1_700_000_000 + i)),
            ("apns-priority", "10" if i % 3 else "5"),
            # indexed by h2, many distinct values: its 4,096-byte table overflows, and
            # values come back after their entries were evicted
            ("x-campaign", f"campaign-{i % 97:03d}-" + "v" * 60),
            ("content-type", "application/json")]


async def send_many(link: Link, start: int, count: int, auth: str) -> dict[int, int]:
    """``count`` requests (some batched in one write, some not); checks what the
    handler saw and what the client got; returns {i: sid}."""
    sids = {}
    for i in range(start, start + count):
        body = b'{"n":%d}' % i
        sids[i] = link.client.request(f"/3/device/{i:064x}", apns_headers(i, auth), body)
        if i % 7 == 0:
            await link.settle()
    await link.settle()
    seen = link.handler.by_path()
    for i, sid in sids.items():
        path = f"/3/device/{i:064x}"
        req = seen[path]
        assert req.headers == {":method": "POST", ":scheme": "https", ":authority": AUTHORITY,
                               ":path": path, **dict(apns_headers(i, auth))}
        assert req.body == b'{"n":%d}' % i
        assert link.client.headers(sid)["x-path"] == path
        assert bytes(link.client.bodies[sid]) == req.body
    return sids


async def test_many_requests_with_h2s_dynamic_table_and_huffman() -> None:
    link = await connect()
    auth = "bearer " + "eyJhbGciOiJFUzI1NiIsImtpZCI6IkFCQzEyMyJ9." * 6
    await send_many(link, 0, 300, auth)
    assert len(link.handler.requests) == 300
    # the premise: h2 Huffman-coded the values and indexed the repeated ones
    assert b"com.example.app" not in link.client.log
    # (h2 indexes every field: its table is full, entries are evicted and re-added)
    table = link.client.h2.encoder.header_table
    assert sum(32 + len(k) + len(v) for k, v in table.dynamic_entries) > 3000
    assert not link.conn.streams


@pytest.mark.parametrize("with_body", [False, True])
async def test_request_headers_of_40000_bytes_over_continuation(with_body: bool) -> None:
    link = await connect()
    rng = random.Random(2)
    big = randtext(rng, 40_000)
    since = len(link.client.log)
    sid = link.client.request("/big", [("x-big", big), ("apns-topic", "t")],
                              b"body" if with_body else b"", "POST" if with_body else "GET")
    frames = [(k, f) for k, f, s, _ in parse_frames(link.client.send()) if s == sid]
    link.conn.data_received(bytes(link.client.log[since:]))
    kinds = [k for k, _ in frames if k in (HEADERS, CONTINUATION)]
    assert kinds[0] == HEADERS and kinds[1:] and set(kinds[1:]) == {CONTINUATION}  # premise
    await link.settle()
    (req,) = link.handler.requests
    assert req.headers["x-big"] == big and req.headers["apns-topic"] == "t"
    assert req.body == (b"body" if with_body else b"")
    assert link.client.status(sid) == 200
    # the HPACK state is intact for the next request (apns-topic indexed by h2 now)
    sid2 = link.client.request("/next", [("apns-topic", "t")], b"n")
    await link.settle()
    assert link.handler.requests[1].headers["apns-topic"] == "t"
    assert link.client.headers(sid2)["x-topic"] == "t"


async def test_response_headers_of_40000_bytes_over_continuation() -> None:
    big = randtext(random.Random(3), 40_000)
    link = await connect(reply=lambda req: (200, {"x-big": big} if req.path == "/big" else
                                            {"x-small": "s"}, b"ok"))
    since = len(link.transport.log)
    sid = link.client.request("/big")
    await link.settle()
    frames = [(k, f, len(p)) for k, f, s, p in link.server_frames(since) if s == sid]
    assert [k for k, _, _ in frames] == [HEADERS, CONTINUATION, CONTINUATION, DATA]
    assert [f & END_HEADERS for _, f, _ in frames[:3]] == [0, 0, END_HEADERS]
    assert all(n <= 16_384 for _, _, n in frames)
    assert link.client.headers(sid)["x-big"] == big
    assert bytes(link.client.bodies[sid]) == b"ok"
    sid2 = link.client.request("/small")
    await link.settle()
    assert link.client.headers(sid2) == {"x-small": "s", "content-length": "2"}


async def test_trailers_after_the_body() -> None:
    link = await connect()
    c = link.client
    sid = c.request("/t", [("apns-topic", "t1")], b"part-1", end=False)
    await link.settle()
    c.h2.send_data(sid, b"part-2")
    await link.settle()
    assert not link.handler.requests and sid not in c.responses  # not before the trailers
    c.h2.send_headers(sid, [("x-checksum", "abc123"), ("x-trailer", "tr")], end_stream=True)
    await link.settle()
    (req,) = link.handler.requests
    assert req.body == b"part-1part-2"
    assert req.headers == {":method": "POST", ":scheme": "https", ":authority": AUTHORITY,
                           ":path": "/t", "apns-topic": "t1"}  # trailers are not headers
    assert c.status(sid) == 200 and bytes(c.bodies[sid]) == b"part-1part-2"
    # trailers without DATA, then a request repeating a trailer field (h2 indexed it:
    # the server's decoder must have seen the trailer blocks)
    sid2 = c.request("/t2", [("apns-topic", "t2")], end=False)
    c.h2.send_headers(sid2, [("x-checksum", "abc123")], end_stream=True)
    sid3 = c.request("/t3", [("x-checksum", "abc123"), ("x-trailer", "tr")], b"3")
    await link.settle()
    assert c.status(sid2) == 200 and c.headers(sid2)["x-length"] == "0"
    assert link.handler.by_path()["/t3"].headers["x-checksum"] == "abc123"
    assert link.handler.by_path()["/t3"].headers["x-trailer"] == "tr"
    assert bytes(c.bodies[sid3]) == b"3"
    assert not link.conn.streams


# --- 3. response encoding ----------------------------------------------------------------

STATUSES = [200, 200, 200, 400, 403, 404, 410, 413, 429, 500, 503, 204]


def provider_reply(req: Request) -> Reply:
    """An APNs-like answer: repeating content-type, varying apns-id and status."""
    n = int(req.path.rsplit("/", 1)[1])
    status = STATUSES[n % len(STATUSES)]
    headers = {"apns-id": f"{n:08X}-AAAA-4BBB-8CCC-{n:012X}",
               "x-region": f"region-{n % 40:02d}-" + "r" * 80}
    if status == 204:
        return status, headers, b""
    if status == 429:
        headers["retry-after"] = str(n)
    return status, {"content-type": "application/json", **headers}, b'{"reason":"R%d"}' % n


async def answer_many(link: Link, start: int, count: int) -> None:
    sids = {n: link.client.request(f"/3/device/{n}", [("apns-topic", "t")], b"{}")
            for n in range(start, start + count)}
    await link.settle()
    for n, sid in sids.items():
        status, headers, body = provider_reply(Request("POST", f"/x/{n}", {}, b""))
        if body:
            headers["content-length"] = str(len(body))
        assert link.client.status(sid) == status
        assert link.client.headers(sid) == headers
        assert bytes(link.client.bodies.get(sid, b"")) == body
        assert sid in link.client.ended


async def test_responses_decode_over_300_with_repeating_and_varying_headers() -> None:
    link = await connect(reply=provider_reply, max_streams=1000)
    await answer_many(link, 0, 300)
    enc = link.conn.encoder
    assert enc.inserted > 40 and enc.size <= enc.max_size == 4096  # premise: table used
    # repeated fields are one byte (indexed) from their third use
    since = len(link.transport.log)
    sid = link.client.request("/3/device/0")
    await link.settle()
    (block,) = [p for k, _, s, p in link.server_frames(since) if k == HEADERS and s == sid]
    assert block[0] == 0x88  # :status 200, static
    assert block[1] & 0x80 and block[1] & 0x7F >= 62  # content-type, dynamic
    assert b"application/json" not in block and b"region-00" not in block
    assert b"apns-id" in block  # a literal each time
    assert link.client.status(sid) == 200


async def test_responses_decode_after_header_table_size_changes() -> None:
    link = await connect(reply=provider_reply, max_streams=1000)
    await answer_many(link, 0, 50)
    n = 50
    for size in (256, 0, 4096):
        link.client.h2.update_settings({SettingCodes.HEADER_TABLE_SIZE: size})
        await link.settle()
        assert link.conn.encoder.max_size == size
        await answer_many(link, n, 100)
        n += 100
        assert link.client.h2.decoder.header_table_size == size  # the update got there
        assert link.conn.encoder.size <= size
    # two changes between two responses: the smallest, then the final size, announced
    for low, first_bytes in ((256, b"\x3f\xe1\x01\x3f\xe1\x1f"), (0, b"\x20\x3f\xe1\x1f")):
        link.client.h2.update_settings({SettingCodes.HEADER_TABLE_SIZE: low})
        link.client.h2.update_settings({SettingCodes.HEADER_TABLE_SIZE: 4096})
        await link.settle()
        since = len(link.transport.log)
        await answer_many(link, n, 30)
        n += 30
        blocks = [p for k, _, _, p in link.server_frames(since) if k == HEADERS]
        assert blocks[0].startswith(first_bytes)
        assert not any(b.startswith(b"\x3f") or b.startswith(b"\x20") for b in blocks[1:])
        assert link.client.h2.decoder.header_table_size == 4096


def test_field_encoder_status_codes_decode() -> None:
    enc, dec = FieldEncoder(), hpack.Decoder()
    expected = {"200": b"\x88", "404": b"\x8d", "503": b"\x08\x03503"}
    for _ in range(3):  # again and again: 503 stays a literal, the others static
        for status, raw in expected.items():
            block = enc.block([(":status", status)])
            assert block == raw
            assert dec.decode(block, raw=True) == [(b":status", status.encode())]


@pytest.mark.parametrize("status", [200, 404, 503])
async def test_status_codes_decode_in_h2(status: int) -> None:
    link = await connect(reply=lambda req: (status, {}, b"" if status == 200 else b"e"))
    sids = [link.client.request(f"/{i}") for i in range(3)]
    await link.settle()
    assert [link.client.status(s) for s in sids] == [status] * 3


# --- 4. flow control of responses --------------------------------------------------------


def big_reply(size: int, seed: int = 4) -> Callable[[Request], Reply]:
    body = random.Random(seed).randbytes(size)
    return lambda req: (200, {"content-type": "application/octet-stream"}, body)


async def test_response_waits_for_a_tiny_stream_window() -> None:
    link = await connect({SettingCodes.INITIAL_WINDOW_SIZE: 100}, reply=big_reply(5000))
    body = link.handler.reply(Request("", "", {}, b""))[2]
    c = link.client
    c.ack_data = False
    sid = c.request()
    await link.settle()
    assert bytes(c.bodies[sid]) == body[:100]  # exactly the window, no more
    assert sid not in c.ended and sid in link.conn.streams
    await link.drain(lambda: sid in c.ended)
    assert bytes(c.bodies[sid]) == body  # whole and in order
    assert max(c.chunks[sid]) <= 100
    assert c.headers(sid)["content-length"] == "5000"
    assert not link.conn.streams


async def test_response_waits_for_the_connection_window() -> None:
    link = await connect({SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20}, reply=big_reply(200_000))
    body = link.handler.reply(Request("", "", {}, b""))[2]
    c = link.client
    c.ack_data = False
    sids = [c.request(f"/{i}") for i in range(2)]
    await link.settle()
    assert sum(len(c.bodies[s]) for s in sids) == 65_535  # the connection window, no more
    assert max(n for s in sids for n in c.chunks.get(s, [])) <= 16_384  # the client's MAX_FRAME_SIZE
    # stream credit alone does not let more through
    for s in sids:
        c.h2.increment_flow_control_window(100_000, stream_id=s)
    await link.settle()
    assert sum(len(c.bodies[s]) for s in sids) == 65_535
    c.h2.increment_flow_control_window(10_000)  # the connection's
    await link.settle()
    assert sum(len(c.bodies[s]) for s in sids) == 75_535
    c.unacked.clear()
    c.ack_data = True
    c.h2.increment_flow_control_window(1 << 20)
    await link.settle()
    await link.drain(lambda: all(s in c.ended for s in sids))
    assert [bytes(c.bodies[s]) for s in sids] == [body, body]
    assert not link.conn.streams


async def test_response_body_in_one_frame_when_the_client_allows_larger_frames() -> None:
    link = await connect({SettingCodes.MAX_FRAME_SIZE: 1 << 16}, reply=big_reply(50_000))
    since = len(link.transport.log)
    sid = link.client.request()
    await link.settle()
    assert [len(p) for k, _, s, p in link.server_frames(since) if k == DATA and s == sid] == [
        50_000]
    assert len(link.client.bodies[sid]) == 50_000


async def test_initial_window_size_raised_mid_transfer() -> None:
    link = await connect({SettingCodes.INITIAL_WINDOW_SIZE: 100}, reply=big_reply(5000))
    body = link.handler.reply(Request("", "", {}, b""))[2]
    c = link.client
    c.ack_data = False
    sid = c.request()
    await link.settle()
    assert len(c.bodies[sid]) == 100
    c.h2.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 3000})
    await link.settle()
    # the open stream's window grew by the difference: 3,000 bytes in all, none acked
    assert bytes(c.bodies[sid]) == body[:3000]
    later = c.request("/later")  # a new stream: 3,000 from the start
    await link.settle()
    assert bytes(c.bodies[later]) == body[:3000]
    await link.drain(lambda: sid in c.ended and later in c.ended)
    assert bytes(c.bodies[sid]) == bytes(c.bodies[later]) == body


async def test_initial_window_size_lowered_mid_transfer() -> None:
    link = await connect({SettingCodes.INITIAL_WINDOW_SIZE: 1000}, reply=big_reply(3000))
    body = link.handler.reply(Request("", "", {}, b""))[2]
    c = link.client
    c.ack_data = False
    sid = c.request()
    await link.settle()
    assert len(c.bodies[sid]) == 1000
    c.h2.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 100})
    await link.settle()
    c.unacked.clear()  # credit by hand from here
    c.h2.increment_flow_control_window(500, stream_id=sid)  # window 100 - 1000 + 500 < 0
    await link.settle()
    assert len(c.bodies[sid]) == 1000
    c.h2.increment_flow_control_window(600, stream_id=sid)  # -400 + 600 = 200
    await link.settle()
    assert bytes(c.bodies[sid]) == body[:1200]
    c.h2.increment_flow_control_window(1800, stream_id=sid)
    await link.settle()
    assert bytes(c.bodies[sid]) == body and sid in c.ended


async def test_stream_counts_against_max_streams_until_its_response_has_left() -> None:
    link = await connect({SettingCodes.INITIAL_WINDOW_SIZE: 100}, max_streams=1,
                         reply=big_reply(5000))
    c = link.client
    c.ack_data = False
    c.lift_stream_limit()
    first = c.request("/1")
    await link.settle()
    assert len(c.bodies[first]) == 100 and first in link.conn.streams
    refused = c.request("/2")  # the response to /1 has not left: no room yet
    await link.settle()
    assert c.resets == {refused: ErrorCodes.REFUSED_STREAM}
    assert [r.path for r in link.handler.requests] == ["/1"]
    await link.drain(lambda: first in c.ended)
    assert not link.conn.streams
    c.ack_data = True
    accepted = c.request("/3")
    await link.settle()
    assert len(c.bodies[accepted]) == 5000 and accepted in c.ended
    assert refused not in c.responses and list(c.resets) == [refused]


# --- 5. MAX_CONCURRENT_STREAMS -----------------------------------------------------------


async def test_third_concurrent_stream_is_refused() -> None:
    link = await connect(max_streams=2)
    c = link.client
    open1 = c.request("/1", end=False)
    open2 = c.request("/2", end=False)
    with pytest.raises(h2.exceptions.TooManyStreamsError):  # h2 keeps to the limit itself
        c.request("/3")
    c.lift_stream_limit()
    third = c.request("/3", body=b"refused body")  # HEADERS, then DATA the server drops
    await link.settle()
    assert c.resets == {third: ErrorCodes.REFUSED_STREAM}
    assert sid_paths(link) == [] and len(link.conn.streams) == 2
    for sid in (open1, open2):
        c.h2.send_data(sid, b"done", end_stream=True)
    await link.settle()
    assert [c.status(s) for s in (open1, open2)] == [200, 200]
    assert sid_paths(link) == ["/1", "/2"]
    # the slots are free again: two at once accepted, a third refused
    again = [c.request(f"/again/{i}", end=False) for i in range(3)]
    await link.settle()
    assert list(c.resets) == [third, again[2]]
    for sid in again[:2]:
        c.h2.send_data(sid, b"x", end_stream=True)
    await link.settle()
    assert [c.status(s) for s in again[:2]] == [200, 200]
    assert sid_paths(link)[2:] == ["/again/0", "/again/1"]
    assert not link.conn.streams and not link.transport.closing


def sid_paths(link: Link) -> list[str]:
    return [r.path for r in link.handler.requests]


async def test_trailers_on_a_refused_stream_are_ignored() -> None:
    link = await connect(max_streams=1)
    c = link.client
    c.lift_stream_limit()
    first = c.request("/1", end=False)
    refused = c.request("/2", body=b"body", end=False)
    c.h2.send_headers(refused, [("x-checksum", "1")], end_stream=True)  # already on its way
    await link.settle()
    assert c.resets == {refused: ErrorCodes.REFUSED_STREAM}
    assert not link.transport.closing
    c.h2.send_data(first, b"x", end_stream=True)
    await link.settle()
    assert c.status(first) == 200


# --- 6. PING, RST_STREAM, GOAWAY ---------------------------------------------------------


async def test_ping_is_answered_with_the_same_payload() -> None:
    link = await connect()
    link.client.h2.ping(b"\x00\x01pong\xfe\xff")
    await link.settle()
    (ack,) = link.client.of(h2.events.PingAckReceived)
    assert ack.ping_data == b"\x00\x01pong\xfe\xff"
    # among requests
    sid = link.client.request("/p", body=b"1", end=False)
    link.client.h2.ping(b"12345678")
    link.client.h2.send_data(sid, b"2", end_stream=True)
    await link.settle()
    assert [a.ping_data for a in link.client.of(h2.events.PingAckReceived)] == [
        b"\x00\x01pong\xfe\xff", b"12345678"]
    assert bytes(link.client.bodies[sid]) == b"12"
    # a PING ACK is not answered
    link.transport.take()
    link.inject(raw_frame(PING, ACK, 0, b"unasked!"))
    assert link.transport.take() == b"" and not link.transport.closing


async def test_client_reset_drops_a_request_in_progress() -> None:
    link = await connect()
    c = link.client
    dropped = c.request("/dropped", body=b"half", end=False)
    kept = c.request("/kept", body=b"k", end=False)
    done = c.request("/done", body=b"d")
    await link.settle()
    c.h2.reset_stream(dropped, ErrorCodes.CANCEL)
    c.h2.send_data(kept, b"ept", end_stream=True)
    since = len(link.transport.log)
    await link.settle()
    assert sid_paths(link) == ["/done", "/kept"]
    assert dropped not in c.responses
    assert not [f for f in link.server_frames(since) if f[2] == dropped]
    assert bytes(c.bodies[kept]) == b"kept" and bytes(c.bodies[done]) == b"d"
    assert not link.conn.streams
    later = c.request("/later", body=b"l")
    await link.settle()
    assert c.status(later) == 200 and not link.transport.closing


async def test_client_reset_while_the_response_waits_for_window() -> None:
    link = await connect({SettingCodes.INITIAL_WINDOW_SIZE: 100}, max_streams=1,
                         reply=big_reply(5000))
    c = link.client
    c.ack_data = False
    sid = c.request("/1")
    await link.settle()
    assert len(c.bodies[sid]) == 100
    c.h2.reset_stream(sid, ErrorCodes.CANCEL)
    await link.settle()
    assert not link.conn.streams  # the slot is free
    since = len(link.transport.log)
    c.h2.increment_flow_control_window(10_000)  # connection credit: nothing more on sid
    c.ack_data = True
    nxt = c.request("/2")
    await link.settle()
    assert not [f for f in link.server_frames(since) if f[2] == sid]
    assert len(c.bodies[nxt]) == 5000 and nxt in c.ended
    assert len(c.bodies[sid]) == 100


GOAWAY_FRAME = raw_frame(GOAWAY, 0, 0, struct.pack(">LL", 0, 0))


async def test_client_goaway_on_an_idle_connection_closes_it() -> None:
    link = await connect()
    sid = link.client.request("/1", body=b"x")
    await link.settle()
    assert link.client.status(sid) == 200
    link.client.h2.close_connection()
    await link.settle()
    assert link.transport.closing
    await asyncio.sleep(0)
    assert not link.live


async def test_client_goaway_waits_for_a_response_held_by_flow_control() -> None:
    link = await connect({SettingCodes.INITIAL_WINDOW_SIZE: 100}, reply=big_reply(5000))
    body = link.handler.reply(Request("", "", {}, b""))[2]
    c = link.client
    c.ack_data = False
    sid = c.request()
    await link.settle()
    link.inject(GOAWAY_FRAME)  # raw: h2 would stop reading after its own GOAWAY
    await link.settle()
    assert not link.transport.closing
    await link.drain(lambda: sid in c.ended)
    assert bytes(c.bodies[sid]) == body
    await asyncio.sleep(0)
    assert link.transport.closing  # once the response has fully left


async def test_client_goaway_closes_after_a_request_in_progress_is_answered() -> None:
    link = await connect()
    c = link.client
    sid = c.request("/1", body=b"part", end=False)
    await link.settle()
    link.inject(GOAWAY_FRAME)
    await link.settle()
    assert not link.transport.closing  # stream 1 is still open
    c.h2.send_data(sid, b"-end", end_stream=True)
    await link.settle()
    assert bytes(c.bodies[sid]) == b"part-end"
    await asyncio.sleep(0)
    assert link.transport.closing


async def test_client_goaway_right_after_a_request_still_gets_the_response() -> None:
    link = await connect()
    sid = link.client.request("/1", body=b"last")
    link.inject(GOAWAY_FRAME)
    link.client.receive(link.transport.take())
    assert link.handler.requests  # the handler ran...
    assert bytes(link.client.bodies.get(sid, b"")) == b"last"  # ...the response is lost


# --- 7. protocol violations --------------------------------------------------------------

# set up: stream 1 answered, stream 5 open (HEADERS, part of its body), 3 never used
VIOLATIONS: dict[str, tuple[bytes, int]] = {
    "even stream id": (raw_frame(HEADERS, END_HEADERS | END_STREAM, 8, GET_BLOCK),
                       ErrorCodes.PROTOCOL_ERROR),
    "decreasing stream id": (raw_frame(HEADERS, END_HEADERS | END_STREAM, 3, GET_BLOCK),
                             ErrorCodes.PROTOCOL_ERROR),
    "data on stream 0": (raw_frame(DATA, 0, 0, b"oops"), ErrorCodes.PROTOCOL_ERROR),
    "headers on stream 0": (raw_frame(HEADERS, END_HEADERS, 0, GET_BLOCK),
                            ErrorCodes.PROTOCOL_ERROR),
    "hpack index 0": (raw_frame(HEADERS, END_HEADERS, 7, b"\x80"), ErrorCodes.COMPRESSION_ERROR),
    "hpack index past the table": (raw_frame(HEADERS, END_HEADERS, 7, b"\xff\xff\x7f"),
                                   ErrorCodes.COMPRESSION_ERROR),
    "hpack truncated string": (raw_frame(HEADERS, END_HEADERS, 7, b"\x82\x00\x05ab"),
                               ErrorCodes.COMPRESSION_ERROR),
    "hpack bad huffman": (raw_frame(HEADERS, END_HEADERS, 7,
                                    b"\x40\x85\xff\xff\xff\xff\xff\x01a"),
                          ErrorCodes.COMPRESSION_ERROR),
    "hpack table size over the limit": (raw_frame(HEADERS, END_HEADERS, 7, b"\x3f\xe1\x3f"),
                                        ErrorCodes.COMPRESSION_ERROR),
    "hpack size update after a field": (raw_frame(HEADERS, END_HEADERS, 7, b"\x82\x3f\xe1\x01"),
                                        ErrorCodes.COMPRESSION_ERROR),
    "data frame over 16384": (raw_frame(DATA, 0, 5, b"x" * 16_385), ErrorCodes.FRAME_SIZE_ERROR),
    "headers frame over 16384": (raw_frame(HEADERS, END_HEADERS, 7, b"\x82" * 16_385),
                                 ErrorCodes.FRAME_SIZE_ERROR),
    "continuation without headers": (raw_frame(CONTINUATION, END_HEADERS, 7, GET_BLOCK),
                                     ErrorCodes.PROTOCOL_ERROR),
    "continuation on another stream": (raw_frame(HEADERS, 0, 7, GET_BLOCK)
                                       + raw_frame(CONTINUATION, END_HEADERS, 9, b"\x82"),
                                       ErrorCodes.PROTOCOL_ERROR),
    "header block interrupted": (raw_frame(HEADERS, 0, 7, GET_BLOCK)
                                 + raw_frame(PING, 0, 0, b"12345678"), ErrorCodes.PROTOCOL_ERROR),
    "settings on a stream": (raw_frame(SETTINGS, 0, 1, b""), ErrorCodes.PROTOCOL_ERROR),
    "settings length": (raw_frame(SETTINGS, 0, 0, b"\0\3\0\0\0"), ErrorCodes.FRAME_SIZE_ERROR),
    "settings ack with payload": (raw_frame(SETTINGS, ACK, 0, b"\0\3\0\0\0\1"),
                                  ErrorCodes.FRAME_SIZE_ERROR),
    "initial window over 2^31-1": (raw_frame(SETTINGS, 0, 0, struct.pack(">HL", 4, 2**31)),
                                   ErrorCodes.FLOW_CONTROL_ERROR),
    "max frame size under 16384": (raw_frame(SETTINGS, 0, 0, struct.pack(">HL", 5, 16_383)),
                                   ErrorCodes.PROTOCOL_ERROR),
    "enable push 2": (raw_frame(SETTINGS, 0, 0, struct.pack(">HL", 2, 2)),
                      ErrorCodes.PROTOCOL_ERROR),
    "push promise from a client": (raw_frame(PUSH_PROMISE, END_HEADERS, 5,
                                             struct.pack(">L", 2) + GET_BLOCK),
                                   ErrorCodes.PROTOCOL_ERROR),
    "ping on a stream": (raw_frame(PING, 0, 5, b"12345678"), ErrorCodes.PROTOCOL_ERROR),
    "rst_stream on stream 0": (raw_frame(RST_STREAM, 0, 0, struct.pack(">L", 8)),
                               ErrorCodes.PROTOCOL_ERROR),
    "goaway on a stream": (raw_frame(GOAWAY, 0, 5, struct.pack(">LL", 0, 0)),
                           ErrorCodes.PROTOCOL_ERROR),
    "priority on stream 0": (raw_frame(PRIORITY, 0, 0, struct.pack(">LB", 1, 16)),
                             ErrorCodes.PROTOCOL_ERROR),
    "window update of 0": (raw_frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", 0)),
                           ErrorCodes.PROTOCOL_ERROR),
    "window update over 2^31-1": (raw_frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", 2**31 - 1)),
                                  ErrorCodes.FLOW_CONTROL_ERROR),
    "window update length": (raw_frame(WINDOW_UPDATE, 0, 0, b"\0\0\1"),
                             ErrorCodes.FRAME_SIZE_ERROR),
    "data bad padding": (raw_frame(DATA, PADDED, 5, b"\x05abc"), ErrorCodes.PROTOCOL_ERROR),
    "headers bad padding": (raw_frame(HEADERS, END_HEADERS | PADDED, 7, b"\x09\x82"),
                            ErrorCodes.PROTOCOL_ERROR),
}


async def violation_link() -> tuple[Link, int]:
    link = await connect()
    c = link.client
    answered = c.request("/answered", body=b"a")
    in_progress = c.request("/in-progress", body=b"part", end=False, sid=5)
    await link.settle()
    assert (answered, in_progress) == (1, 5)
    assert c.status(answered) == 200 and sid_paths(link) == ["/answered"]
    return link, in_progress


async def check_goaway(link: Link, raw: bytes, code: int) -> None:
    since = len(link.transport.log)
    link.inject(raw)
    assert link.transport.closing
    frames = link.server_frames(since)
    assert [k for k, _, _, _ in frames] == [GOAWAY]
    # last stream id: the highest the handler saw (stream 1, answered; not the
    # in-progress stream 5, which a client may safely retry)
    assert goaways(frames) == [(1, code)]
    assert sid_paths(link) == ["/answered"]  # nothing more answered
    # and h2 reads it as such
    link.client.receive(link.transport.take())
    (terminated,) = link.client.of(h2.events.ConnectionTerminated)
    assert terminated.error_code == code
    await asyncio.sleep(0)  # connection_lost from the closed transport
    assert not link.live and not link.conn.streams


@pytest.mark.parametrize("name", list(VIOLATIONS))
async def test_protocol_violation_gets_goaway_and_close(name: str) -> None:
    raw, code = VIOLATIONS[name]
    link, _ = await violation_link()
    await check_goaway(link, raw, code)


@pytest.mark.parametrize("raw", [raw_frame(PING, 0, 0, b"1234567"),
                                 raw_frame(RST_STREAM, 0, 5, b"\0\0\0")],
                         ids=["ping length", "rst_stream length"])
async def test_wrong_length_ping_and_rst_stream_are_frame_size_errors(raw: bytes) -> None:
    link, _ = await violation_link()
    await check_goaway(link, raw, ErrorCodes.FRAME_SIZE_ERROR)


async def test_first_frame_not_settings_is_refused() -> None:
    conn = _Connection(Handler(), 10, set())
    transport = FakeTransport()
    transport.protocol = conn
    conn.connection_made(transport)  # type: ignore[arg-type]
    start = len(transport.log)
    conn.data_received(PREFACE + raw_frame(PING, 0, 0, b"12345678"))
    assert transport.closing
    assert goaways(parse_frames(bytes(transport.log[start:]))) == [(0, ErrorCodes.PROTOCOL_ERROR)]


async def test_stream_window_errors_reset_only_that_stream() -> None:
    link, in_progress = await violation_link()
    c = link.client
    since = len(link.transport.log)
    link.inject(raw_frame(WINDOW_UPDATE, 0, in_progress, struct.pack(">L", 0)))
    frames = link.server_frames(since)
    assert [(k, s, p) for k, _, s, p in frames] == [
        (RST_STREAM, in_progress, struct.pack(">L", ErrorCodes.PROTOCOL_ERROR))]
    c.receive(link.transport.take())
    assert c.resets == {in_progress: ErrorCodes.PROTOCOL_ERROR}
    other = c.request("/other", body=b"o", end=False)
    await link.settle()
    since = len(link.transport.log)
    link.inject(raw_frame(WINDOW_UPDATE, 0, other, struct.pack(">L", 2**31 - 1)))
    assert [(k, s, p) for k, _, s, p in link.server_frames(since)] == [
        (RST_STREAM, other, struct.pack(">L", ErrorCodes.FLOW_CONTROL_ERROR))]
    c.receive(link.transport.take())
    assert not link.transport.closing and not link.conn.streams
    fine = c.request("/fine", body=b"f")
    await link.settle()
    assert c.status(fine) == 200 and sid_paths(link) == ["/answered", "/fine"]


# --- 8. HPACK integers -------------------------------------------------------------------


def test_hpack_int_matches_hpack() -> None:
    for prefix in range(1, 9):
        top = (1 << prefix) - 1
        values = {0, 1, 2, 126, 127, 128, 255, 256, 16_383, 16_384, 2**21 - 1, 2**21,
                  2**31 - 1, 2**32 + 5}
        for base in (top, top + 127, top + 128, top + 16_383, top + 16_384):
            values |= {base - 2, base - 1, base, base + 1, base + 2}
        high = (0xFF << prefix) & 0xFF  # the bits above the prefix, all set
        for value in sorted(v for v in values if v >= 0):
            raw = hpack_int(value, prefix)
            assert raw == bytes(hpack.hpack.encode_integer(value, prefix)), (prefix, value)
            assert hpack.hpack.decode_integer(raw + b"\xff\x00", prefix) == (value, len(raw))
            marked = hpack_int(value, prefix, high)
            assert marked[0] & high == high and marked[1:] == raw[1:]
            assert hpack.hpack.decode_integer(marked, prefix) == (value, len(raw))
            assert (len(raw) == 1) == (value < top)
