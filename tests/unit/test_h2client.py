"""Interop of the lean HTTP/2 client (``pushgate.router.bridge._h2client``) with the
``h2`` library as the server, in memory: the client's transport is a fake that collects
what it writes, an ``h2`` server connection decodes it, and the server's bytes are fed
back with ``data_received``. No sockets, no TLS, no timers: fast and deterministic."""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Callable
from typing import Any

import h2.events
import h2.settings
import hpack
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from pushgate.router.bridge._h2client import FieldEncoder, H2Error, Response, _Connection

AUTHORITY = "api.push.example.com"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x4, 0x8, 0x20


def raw_frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return struct.pack(">BHBBL", n >> 16, n & 0xFFFF, kind, flags, sid) + payload


def parse_frames(raw: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream id, payload) of each frame in ``raw`` (after the preface)."""
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


class FakeTransport:
    """What the client writes, kept; ``close()`` reports ``connection_lost`` on the next
    loop iteration, as asyncio's transports do."""

    def __init__(self) -> None:
        self.pending = bytearray()  # not yet given to the server
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


Responder = Callable[["Server", int], None]


class Server:
    """An ``h2`` server connection that records what it sees and, by default, answers
    every request once its body has ended (status 200, the body echoed)."""

    def __init__(self, settings: dict[int, int] | None = None, *, ack_data: bool = True,
                 respond: Responder | None = None) -> None:
        self.h2 = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        initial = {SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                   SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 16, **(settings or {})}
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values=initial)
        self.h2.max_inbound_frame_size = self.h2.local_settings.max_frame_size
        self.h2.initiate_connection()
        self.ack_data = ack_data
        self.respond = respond if respond is not None else echo
        self.auto = True  # answer ended streams (else they wait in self.ended)
        self.requests: dict[int, list[tuple[bytes, bytes]]] = {}
        self.bodies: dict[int, bytearray] = {}
        self.data_frames: dict[int, list[int]] = {}  # sizes of the DATA received
        self.ended: list[int] = []  # streams whose request ended, not answered yet
        self.events: list[h2.events.Event] = []
        self.max_open = 0
        self.reset: set[int | None] = set()  # streams the client reset
        self.unacked: dict[int, int] = {}  # DATA not acknowledged (ack_data False)
        self._outgoing: dict[int, list[Any]] = {}  # sid -> [memoryview, end_stream]

    def receive(self, data: bytes) -> None:
        for ev in self.h2.receive_data(data):
            self.events.append(ev)
            self.max_open = max(self.max_open, self.h2.open_inbound_streams)
            if isinstance(ev, h2.events.RequestReceived):
                assert ev.stream_id is not None and ev.headers is not None
                self.requests[ev.stream_id] = list(ev.headers)  # type: ignore[arg-type]
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
            self._outgoing[sid] = [memoryview(body), trailers]
            self._send_pending()

    def _send_pending(self) -> None:
        """Response bodies, within the client's windows (more after its WINDOW_UPDATEs)."""
        for sid, item in list(self._outgoing.items()):
            view, trailers = item
            while view:
                room = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
                if room <= 0:
                    break
                chunk, view = view[:room], view[room:]
                self.h2.send_data(sid, bytes(chunk), end_stream=not view and not trailers)
            item[0] = view
            if not view:
                del self._outgoing[sid]
                if trailers:
                    self.h2.send_headers(sid, trailers, end_stream=True)

    def headers(self, sid: int) -> dict[bytes, bytes]:
        return dict(self.requests[sid])

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def echo(server: Server, sid: int) -> None:
    server.send_response(sid, 200, [("x-sid", str(sid))], bytes(server.bodies[sid]))


class Link:
    """A client connection and an h2 server, joined in memory."""

    def __init__(self, conn: _Connection, transport: FakeTransport, server: Server) -> None:
        self.conn, self.transport, self.server = conn, transport, server

    async def settle(self, rounds: int = 3_000) -> None:
        """Move bytes both ways (letting the loop run the client's batched flushes and
        the request tasks) until nothing moves."""
        idle = 0
        for _ in range(rounds):
            for _ in range(4):
                await asyncio.sleep(0)
            moved = False
            data = self.transport.take()
            if data:
                self.server.receive(data)
                moved = True
            back = self.server.h2.data_to_send()
            if back and not self.transport.closing:  # a closed transport reads nothing more
                self.conn.data_received(back)
                moved = True
            idle = 0 if moved else idle + 1
            if idle >= 3:
                return
        raise AssertionError("the link did not settle")

    def inject(self, raw: bytes) -> None:
        """Bytes to the client as if from the server (after what h2 has queued)."""
        back = self.server.h2.data_to_send()
        self.conn.data_received(back + raw)

    def request(self, path: str = "/3/device/abc", headers: dict[str, str] | None = None,
                body: bytes = b"{}", method: str = "POST") -> asyncio.Task[Response]:
        return asyncio.create_task(
            self.conn.request(method, AUTHORITY, path, headers or {}, body))


async def connect(settings: dict[int, int] | None = None, *, max_streams: int = 1000,
                  **kwargs: Any) -> Link:
    server = Server(settings, **kwargs)
    conn = _Connection(max_streams)
    transport = FakeTransport()
    transport.protocol = conn
    conn.connection_made(transport)  # type: ignore[arg-type]
    link = Link(conn, transport, server)
    await link.settle()
    assert conn.ready.done() and conn.ready.exception() is None
    return link


async def drain(link: Link, *tasks: asyncio.Task[Response], rounds: int = 300) -> None:
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


# --- 1. a request and its response ----------------------------------------------------


async def test_handshake() -> None:
    link = await connect()
    (changed,) = link.server.of(h2.events.RemoteSettingsChanged)
    assert changed.changed_settings[SettingCodes.ENABLE_PUSH].new_value == 0
    assert link.server.h2.remote_settings.enable_push == 0
    assert link.server.of(h2.events.SettingsAcknowledged)  # the client acked ours
    assert link.conn.ready.done() and not link.conn.closed


async def test_post_pseudo_headers_headers_and_body() -> None:
    link = await connect()
    body = b'{"aps":{"alert":"hello \xc3\xa9"}}'
    task = link.request("/3/device/0123abcd", {"apns-topic": "com.example.app",
                                               "apns-push-type": "alert",
                                               "content-type": "application/json"}, body)
    await link.settle()
    response = await got(task)
    (sid,) = link.server.requests
    assert sid == 1
    fields = link.server.requests[sid]
    pseudo = [(k, v) for k, v in fields if k.startswith(b":")]
    assert pseudo == [(b":method", b"POST"), (b":scheme", b"https"),
                      (b":authority", AUTHORITY.encode()), (b":path", b"/3/device/0123abcd")]
    assert fields[:4] == pseudo  # pseudo-headers first
    assert link.server.headers(sid) == {
        **dict(pseudo), b"apns-topic": b"com.example.app", b"apns-push-type": b"alert",
        b"content-type": b"application/json", b"content-length": str(len(body)).encode()}
    assert link.server.bodies[sid] == body
    assert response == Response(200, {"x-sid": "1"}, body)


async def test_get_without_body_has_no_content_length() -> None:
    link = await connect()
    task = link.request("/v1/ping", {"accept": "*/*"}, b"", method="GET")
    await link.settle()
    assert (await got(task)).status == 200
    headers = link.server.headers(1)
    assert headers[b":method"] == b"GET"
    assert b"content-length" not in headers
    assert link.server.bodies[1] == b""
    # END_STREAM on the HEADERS frame itself
    kinds = [(k, f) for k, f, s, _ in parse_frames(bytes(link.transport.log)) if s == 1]
    assert kinds == [(HEADERS, END_HEADERS | END_STREAM)]


async def test_response_status_headers_and_split_padded_body() -> None:
    def respond(server: Server, sid: int) -> None:
        server.h2.send_headers(sid, [(":status", "410"), ("apns-id", "X-1"),
                                     ("content-type", "application/json")])
        server.h2.send_data(sid, b'{"reason":', pad_length=7)
        server.h2.send_data(sid, b'"Unregistered",', pad_length=0)
        server.h2.send_data(sid, b"", pad_length=30)
        server.h2.send_data(sid, b'"timestamp":1}', end_stream=True, pad_length=255)

    link = await connect(respond=respond)
    task = link.request()
    await link.settle()
    assert await got(task) == Response(410, {"apns-id": "X-1", "content-type": "application/json"},
                                  b'{"reason":"Unregistered","timestamp":1}')


async def test_informational_response_then_final_with_trailers() -> None:
    def respond(server: Server, sid: int) -> None:
        server.h2.send_headers(sid, [(":status", "103"), ("link", "</a>")])
        server.send_response(sid, 201, [("x-a", "1")], b"part1" * 1000,
                             trailers=[("x-checksum", "abc")])

    link = await connect(respond=respond)
    task = link.request()
    await link.settle()
    response = await got(task)
    assert response.status == 201
    assert response.body == b"part1" * 1000
    assert response.headers["x-a"] == "1"
    assert response.headers["x-checksum"] == "abc"
    assert "link" not in response.headers  # from the 1xx, ignored


async def test_response_headers_with_padding_and_priority_flags() -> None:
    """HEADERS with PADDED and PRIORITY (h2 sends neither, so built from h2's encoder
    to keep the client's HPACK decoder in step)."""
    link = await connect()
    link.server.auto = False
    task = link.request()
    await link.settle()
    block = link.server.h2.encoder.encode([(b":status", b"202"), (b"x-pad", b"yes")])
    pad = 9
    payload = bytes([pad]) + struct.pack(">LB", 0x80000003, 15) + block + b"\0" * pad
    link.inject(raw_frame(HEADERS, END_HEADERS | PADDED | PRIORITY_FLAG, 1, payload)
                + raw_frame(PRIORITY, 0, 1, struct.pack(">LB", 0, 1))
                + raw_frame(0xEE, 0, 0, b"an unknown frame type is ignored")
                + raw_frame(DATA, END_STREAM | PADDED, 1, b"\x02ok\0\0"))
    await asyncio.sleep(0)
    assert await got(task) == Response(202, {"x-pad": "yes"}, b"ok")
    # the connection is still good: another request on it (via h2 again) works
    link.server.auto, link.server.ended = True, []
    link.server.h2.reset_stream(1)  # h2 still thinks stream 1 is awaiting its answer
    task2 = link.request(body=b"again")
    await link.settle()
    assert (await got(task2)).body == b"again"


async def test_large_response_body_is_credited_back() -> None:
    """A body over the client's stream window (1 MiB) and connection window (16 MiB +
    64 KiB) arrives whole: the client sends WINDOW_UPDATEs."""
    big = random.Random(1).randbytes(1 << 16) * 280  # 17.5 MiB

    def respond(server: Server, sid: int) -> None:
        server.send_response(sid, 200, [], big)

    link = await connect(respond=respond)
    task = link.request()
    await link.settle()
    response = await got(task)
    assert len(response.body) == len(big) and response.body == big


async def test_requests_of_one_loop_turn_leave_in_one_write() -> None:
    link = await connect()
    before = link.transport.writes
    tasks = [link.request(f"/p/{i}", {"apns-topic": "t"}, b"x" * i) for i in range(1, 11)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert link.transport.writes == before + 1
    await link.settle()
    assert [(await got(t)).body for t in tasks] == [b"x" * i for i in range(1, 11)]
    assert sorted(link.server.requests) == list(range(1, 21, 2))


# --- 2. HPACK -------------------------------------------------------------------------


def _apns_headers(i: int, auth: str) -> dict[str, str]:
    return {"authorization": auth, "apns-topic": "com.example.app",
            "apns-push-type": "alert", "apns-id": f"{i:08x}-0000-4000-8000-{i:012x}",
            "apns-priority": "10" if i % 3 else "5",
            # indexed, and many distinct values: the 4,096-byte table overflows, and
            # values come back after their entries were evicted
            "x-campaign": f"campaign-{i % 97:03d}-" + "v" * 60}


async def _check_many(link: Link, start: int, count: int, auth: str) -> None:
    tasks = {}
    for i in range(start, start + count):
        tasks[i] = link.request(f"/3/device/{i:064x}", _apns_headers(i, auth), b'{"n":%d}' % i)
        if i % 7 == 0:  # some in separate loop turns, some batched
            await asyncio.sleep(0)
    await link.settle()
    by_path = {dict(f)[b":path"]: dict(f) for f in link.server.requests.values()}
    for i, task in tasks.items():
        assert (await got(task)).body == b'{"n":%d}' % i
        seen = by_path[f"/3/device/{i:064x}".encode()]
        expected = {k.encode(): v.encode() for k, v in _apns_headers(i, auth).items()}
        assert {k: v for k, v in seen.items() if not k.startswith(b":")} == {
            **expected, b"content-length": str(len(b'{"n":%d}' % i)).encode()}
        assert seen[b":authority"] == AUTHORITY.encode()


async def test_hpack_state_over_many_requests_and_table_size_changes() -> None:
    link = await connect()
    auth = "bearer " + "eyJhbGciOiJFUzI1NiIsImtpZCI6IkFCQzEyMyJ9." * 6
    await _check_many(link, 0, 300, auth)
    # (the test's own premise: the table overflowed, entries were evicted and re-added;
    # 103 distinct indexed fields were sent)
    assert link.conn.encoder.inserted > 103
    # the server shrinks the client's encoder table mid-connection, then forbids it
    for size in (256, 0, 4096):
        link.server.h2.update_settings({SettingCodes.HEADER_TABLE_SIZE: size})
        await link.settle()
        start = len(link.server.requests)
        await _check_many(link, start, 100, auth)
        assert link.server.h2.decoder.header_table_size == size  # the update got there
    assert len(link.server.requests) == 600


async def test_hpack_table_size_change_while_requests_are_queued() -> None:
    """SETTINGS_HEADER_TABLE_SIZE arriving between blocks encoded in one loop turn and
    their flush: the ones before use the old table, the ones after announce the size."""
    link = await connect()
    auth = "bearer " + "x" * 200
    await _check_many(link, 0, 20, auth)
    link.server.h2.update_settings({SettingCodes.HEADER_TABLE_SIZE: 128})
    first = [link.request(f"/a/{i}", _apns_headers(i, auth)) for i in range(5)]
    await asyncio.sleep(0)  # encoded and queued, not yet flushed
    link.conn.data_received(link.server.h2.data_to_send())  # the SETTINGS arrive
    second = [link.request(f"/b/{i}", _apns_headers(i, auth)) for i in range(5)]
    await link.settle()
    for i, t in enumerate([*first, *second]):
        await got(t)
        path = f"/{'ab'[i // 5]}/{i % 5}".encode()
        (seen,) = [dict(f) for f in link.server.requests.values() if dict(f)[b":path"] == path]
        assert seen[b"authorization"] == auth.encode()
        assert seen[b"x-campaign"] == _apns_headers(i % 5, auth)["x-campaign"].encode()


async def test_hpack_table_shrunk_then_grown_between_blocks() -> None:
    link = await connect()
    auth = "bearer " + "y" * 100
    await _check_many(link, 0, 10, auth)
    link.server.h2.update_settings({SettingCodes.HEADER_TABLE_SIZE: 256})
    await link.settle()  # no request in between
    link.server.h2.update_settings({SettingCodes.HEADER_TABLE_SIZE: 4096})
    await link.settle()
    await _check_many(link, 10, 60, auth)


NAMES = [":authority", ":path", "authorization", "content-length", "content-type",
         "apns-id", "apns-topic", "apns-expiration", "apns-push-type", "apns-priority",
         "retry-after", ":status", ":method", ":scheme", "x-a", "x-b", "x-long"]


def _random_fields(rng: random.Random) -> list[tuple[str, str]]:
    fields = []
    for _ in range(rng.randrange(0, 12)):
        name = rng.choice(NAMES)
        if name == ":method":
            value = rng.choice(["GET", "POST", "PUT"])
        elif name == ":scheme":
            value = rng.choice(["https", "http"])
        elif name == ":status":
            value = rng.choice(["200", "204", "400", "410", "429", "500"])
        elif name == "x-long":
            value = "L" * rng.choice([10, 500, 3000, 4057, 4058, 4059, 5000])
        elif rng.random() < 0.6:  # repeats
            value = f"v{rng.randrange(20)}"
        else:
            value = "".join(chr(rng.randrange(32, 256)) for _ in range(rng.randrange(0, 200)))
        fields.append((name, value))
    return fields


def _decoded(decoder: hpack.Decoder, block: bytes) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1"))
            for k, v in decoder.decode(block, raw=True)]


def test_field_encoder_round_trips_random_header_lists() -> None:
    rng = random.Random(20240611)
    for _ in range(12):
        encoder, decoder = FieldEncoder(), hpack.Decoder()
        decoder.max_header_list_size = 1 << 20
        for _ in range(150):
            if rng.random() < 0.08:  # the peer's SETTINGS_HEADER_TABLE_SIZE, between blocks
                size = rng.choice([0, 1, 64, 100, 256, 1000, 4096, 8192])
                decoder.max_allowed_table_size = size
                encoder.resize(size)
            fields = _random_fields(rng)
            assert _decoded(decoder, encoder.block(fields)) == fields
            assert decoder.header_table_size == encoder.max_size
            assert encoder.size <= encoder.max_size


def test_field_encoder_indexes_repeats_and_evicts() -> None:
    encoder, decoder = FieldEncoder(), hpack.Decoder()
    fields = [(":method", "POST"), (":scheme", "https"), (":authority", AUTHORITY),
              (":path", "/3/device/1"), ("authorization", "bearer " + "t" * 150),
              ("apns-topic", "com.example"), ("apns-id", "id-1")]
    blocks = [encoder.block(fields) for _ in range(3)]
    assert [_decoded(decoder, b) for b in blocks] == [fields] * 3
    # by the third use, :method, :scheme, :authority, authorization and apns-topic are
    # one byte each; :path and apns-id stay literals
    assert len(blocks[2]) == 5 + len(b"\x04\x0b/3/device/1") + len(b"\x00\x07apns-id\x04id-1")
    assert len(blocks[0]) > 150
    for i in range(200):  # overflow the table: the first entries are evicted
        assert _decoded(decoder, encoder.block([("x-fill", f"{i:0100d}")])) == [
            ("x-fill", f"{i:0100d}")]
    assert encoder.size <= 4096
    assert _decoded(decoder, encoder.block(fields)) == fields


def test_field_encoder_resize_to_zero_and_back() -> None:
    encoder, decoder = FieldEncoder(), hpack.Decoder()
    fields = [("apns-topic", "a"), ("x-b", "b" * 300)]
    for size in (4096, 0, 0, 4096, 50, 4096):
        encoder.resize(size)
        decoder.max_allowed_table_size = size
        for _ in range(3):
            assert _decoded(decoder, encoder.block(fields)) == fields
        assert decoder.header_table_size == encoder.max_size == size


def test_field_encoder_several_resizes_between_blocks() -> None:
    encoder, decoder = FieldEncoder(), hpack.Decoder()
    fields = [("apns-topic", "t" * 100), ("x-a", "a" * 100), ("x-b", "b" * 100)]
    assert _decoded(decoder, encoder.block(fields)) == fields
    encoder.resize(100)
    encoder.resize(4096)  # no block in between
    for _ in range(3):
        assert _decoded(decoder, encoder.block(fields)) == fields
    assert decoder.header_table_size == encoder.max_size


# --- 3. flow control ------------------------------------------------------------------


async def test_body_waits_for_small_stream_window() -> None:
    link = await connect({SettingCodes.INITIAL_WINDOW_SIZE: 100}, ack_data=False)
    body = random.Random(3).randbytes(5000)
    task = link.request(body=body)
    await link.settle()
    assert not task.done()
    assert link.server.bodies[1] == body[:100]  # exactly the window, no more
    await drain(link, task)
    assert (await got(task)).body == body
    assert link.server.bodies[1] == body
    assert max(link.server.data_frames[1]) <= 100


async def test_body_waits_for_connection_window() -> None:
    """The connection window (65,535, the server not crediting it) holds a body that
    the stream window would let through."""
    link = await connect({SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20}, ack_data=False)
    body = random.Random(4).randbytes(300_000)
    task = link.request(body=body)
    await link.settle()
    assert len(link.server.bodies[1]) == 65_535
    assert max(link.server.data_frames[1]) <= 16_384  # the server's MAX_FRAME_SIZE
    await drain(link, task)
    assert (await got(task)).body == body
    assert link.server.bodies[1] == body


async def test_concurrent_large_bodies_share_the_windows() -> None:
    link = await connect({SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    rng = random.Random(5)
    bodies = [rng.randbytes(rng.randrange(20_000, 60_000)) for _ in range(8)]
    small = [link.request(f"/s/{i}", body=b"s%d" % i) for i in range(3)]
    tasks = [link.request(f"/{i}", body=b) for i, b in enumerate(bodies)]
    small += [link.request(f"/t/{i}", body=b"t%d" % i) for i in range(3)]
    await link.settle()
    assert [(await got(t)).body for t in tasks] == bodies
    assert [(await got(t)).body for t in small] == [b"s0", b"s1", b"s2", b"t0", b"t1", b"t2"]
    for sid, fields in link.server.requests.items():
        assert int(dict(fields)[b"content-length"]) == len(link.server.bodies[sid])


async def test_initial_window_size_raised_mid_transfer() -> None:
    link = await connect({SettingCodes.INITIAL_WINDOW_SIZE: 100}, ack_data=False)
    body = random.Random(6).randbytes(5000)
    task = link.request(body=body)
    await link.settle()
    assert len(link.server.bodies[1]) == 100
    link.server.h2.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 3000})
    await link.settle()
    # the open stream's window grew by the difference: 3,000 bytes in all, not acked
    assert link.server.bodies[1] == body[:3000]
    later = link.request("/later", body=b"z" * 2500)  # a new stream: 3,000 from the start
    await link.settle()
    assert link.server.bodies[3] == b"z" * 2500
    await drain(link, task, later)
    assert (await got(task)).body == body
    assert (await got(later)).body == b"z" * 2500


async def test_initial_window_size_lowered_mid_transfer() -> None:
    link = await connect({SettingCodes.INITIAL_WINDOW_SIZE: 1000}, ack_data=False)
    body = random.Random(7).randbytes(3000)
    task = link.request(body=body)
    await link.settle()
    assert len(link.server.bodies[1]) == 1000
    link.server.h2.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 100})
    await link.settle()
    # the stream window is now 100 - 1000 = -900: 500 more credit is not enough
    link.server.unacked.clear()
    link.server.h2.increment_flow_control_window(500, 1)
    await link.settle()
    assert len(link.server.bodies[1]) == 1000
    link.server.h2.increment_flow_control_window(600, 1)  # -400 + 600 = 200
    await link.settle()
    assert link.server.bodies[1] == body[:1200]
    link.server.h2.increment_flow_control_window(1800, 1)
    await link.settle()
    assert (await got(task)).body == body


# --- 4. MAX_CONCURRENT_STREAMS --------------------------------------------------------


async def test_max_concurrent_streams_is_respected() -> None:
    link = await connect({SettingCodes.MAX_CONCURRENT_STREAMS: 2})
    link.server.auto = False
    tasks = [link.request(f"/{i}", body=b"%d" % i) for i in range(10)]
    for _ in range(20):
        await link.settle()
        assert len(link.server.ended) <= 2
        assert len(link.conn.streams) <= 2
        link.server.answer_all()
        if all(t.done() for t in tasks):
            break
    assert [(await got(t)).body for t in tasks] == [b"%d" % i for i in range(10)]
    assert link.server.max_open == 2
    assert sorted(link.server.requests) == list(range(1, 21, 2))


async def test_max_concurrent_streams_raised_later_is_honoured() -> None:
    link = await connect({SettingCodes.MAX_CONCURRENT_STREAMS: 1}, max_streams=10)
    link.server.auto = False
    tasks = [link.request(f"/{i}") for i in range(8)]
    await link.settle()
    assert len(link.server.ended) == 1
    link.server.h2.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 5})
    await link.settle()
    assert len(link.server.ended) == 5  # 5 open at once now
    assert len(link.conn.streams) == 5
    link.server.answer_all()
    await link.settle()
    assert len(link.server.ended) == 3  # the other 3 requests
    link.server.auto = True
    link.server.answer_all()
    await link.settle()
    for t in tasks:
        await got(t)


async def test_our_max_streams_caps_the_servers() -> None:
    link = await connect(max_streams=3)
    link.server.auto = False
    tasks = [link.request(f"/{i}") for i in range(7)]
    await link.settle()
    assert len(link.server.ended) == 3
    link.server.auto = True
    link.server.answer_all()
    await link.settle()
    assert [(await got(t)).status for t in tasks] == [200] * 7
    assert link.server.max_open == 3


# --- 5. CONTINUATION ------------------------------------------------------------------


async def test_large_request_header_block_uses_continuation() -> None:
    link = await connect()
    big = "".join(chr(33 + i % 90) for i in range(40_000))
    task = link.request(headers={"x-big": big, "apns-topic": "t"}, body=b"b")
    await link.settle()
    assert (await got(task)).body == b"b"
    assert link.server.headers(1)[b"x-big"] == big.encode()
    frames = [(k, f, len(p)) for k, f, s, p in parse_frames(bytes(link.transport.log))
              if s == 1 and k in (HEADERS, CONTINUATION)]
    assert [k for k, _, _ in frames] == [HEADERS, CONTINUATION, CONTINUATION]
    assert [f & END_HEADERS for _, f, _ in frames] == [0, 0, END_HEADERS]
    assert all(n <= 16_384 for _, _, n in frames)
    # and the HPACK state is intact for the next request
    task = link.request(headers={"apns-topic": "t", "x-small": "s"}, body=b"c")
    await link.settle()
    await got(task)
    assert link.server.headers(3)[b"apns-topic"] == b"t"


async def test_large_request_header_block_with_larger_server_frames() -> None:
    link = await connect({SettingCodes.MAX_FRAME_SIZE: 1 << 15})
    big = "q" * 40_000
    task = link.request(headers={"x-big": big})
    await link.settle()
    await got(task)
    assert link.server.headers(1)[b"x-big"] == big.encode()
    frames = [len(p) for k, _, s, p in parse_frames(bytes(link.transport.log))
              if s == 1 and k in (HEADERS, CONTINUATION)]
    assert len(frames) == 2 and frames[0] == 1 << 15


async def test_response_header_block_split_over_continuation() -> None:
    big = "".join(chr(48 + i % 70) for i in range(30_000))

    def respond(server: Server, sid: int) -> None:
        if sid == 1:  # (h2 Huffman-codes them: ~0.2 s each, so only two big blocks)
            server.send_response(sid, 200, [("x-big", big), ("x-after", "a")], b"body",
                                 trailers=[("x-trailer-big", big[:20_000:-1])])
        else:
            echo(server, sid)

    link = await connect(respond=respond)
    tasks = [link.request(f"/{i}", body=b"%d" % i) for i in range(3)]
    await link.settle()
    response = await tasks[0]
    assert response.headers["x-big"] == big
    assert response.headers["x-after"] == "a"
    assert response.headers["x-trailer-big"] == big[:20_000:-1]
    assert response.body == b"body"
    # the client's HPACK decoder is still in step with h2's encoder
    assert [(await got(t)).headers for t in tasks[1:]] == [{"x-sid": "3"}, {"x-sid": "5"}]


# --- 6. RST_STREAM --------------------------------------------------------------------


async def test_stream_reset_fails_only_that_request() -> None:
    def respond(server: Server, sid: int) -> None:
        if sid == 3:
            server.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
        else:
            echo(server, sid)

    link = await connect(respond=respond)
    tasks = [link.request(f"/{i}", body=b"%d" % i) for i in range(4)]
    await link.settle()
    assert (await tasks[0]).body == b"0"
    err = await fails(tasks[1])
    assert "reset" in str(err)
    assert (await tasks[2]).body == b"2"
    assert (await tasks[3]).body == b"3"
    assert not link.conn.closed
    later = link.request(body=b"later")
    await link.settle()
    assert (await got(later)).body == b"later"


async def test_stream_reset_while_body_waits_for_window() -> None:
    link = await connect({SettingCodes.INITIAL_WINDOW_SIZE: 100}, ack_data=False)
    link.server.auto = False
    blocked = link.request(body=b"a" * 1000)
    other = link.request(body=b"b" * 1000)
    await link.settle()
    link.server.h2.reset_stream(1, ErrorCodes.CANCEL)
    await link.settle()
    await fails(blocked)
    link.server.auto = True
    await drain(link, other)
    assert (await got(other)).body == b"b" * 1000
    assert len(link.server.bodies[1]) == 100  # nothing more sent on the reset stream


# --- 7. GOAWAY ------------------------------------------------------------------------


async def test_goaway_fails_streams_above_last_id_only() -> None:
    link = await connect()
    link.server.auto = False
    tasks = [link.request(f"/{i}", body=b"%d" % i) for i in range(4)]  # streams 1, 3, 5, 7
    await link.settle()
    assert link.server.ended == [1, 3, 5, 7]
    # GOAWAY(last 3) ahead of the answers to 1 and 3 (raw: h2 sends nothing after it)
    echo(link.server, 1)
    echo(link.server, 3)
    answers = link.server.h2.data_to_send()
    link.conn.data_received(raw_frame(GOAWAY, 0, 0, struct.pack(">LL", 3, 0)))
    await asyncio.sleep(0)
    assert link.conn.closed
    assert "GOAWAY" in str(await fails(tasks[2]))
    await fails(tasks[3])
    assert not tasks[0].done() and not tasks[1].done()
    with pytest.raises(H2Error):
        await link.conn.request("POST", AUTHORITY, "/new", {}, b"x")
    link.conn.data_received(answers)
    assert (await tasks[0]).body == b"0"
    assert (await tasks[1]).body == b"1"
    await asyncio.sleep(0)
    assert link.transport.closing  # idle and closed: the connection is let go


async def test_goaway_from_h2_with_last_stream_id() -> None:
    link = await connect()
    link.server.auto = False
    tasks = [link.request(f"/{i}") for i in range(3)]
    await link.settle()
    echo(link.server, 1)
    link.server.h2.close_connection(ErrorCodes.NO_ERROR, last_stream_id=1)
    await link.settle()
    assert (await tasks[0]).status == 200
    await fails(tasks[1])
    await fails(tasks[2])
    assert link.conn.closed and link.transport.closing
    with pytest.raises(H2Error):
        await link.conn.request("POST", AUTHORITY, "/new", {}, b"x")


async def test_goaway_fails_requests_waiting_for_a_slot() -> None:
    link = await connect({SettingCodes.MAX_CONCURRENT_STREAMS: 1})
    link.server.auto = False
    tasks = [link.request(f"/{i}") for i in range(4)]  # 1 on the wire, 3 waiting
    try:
        await link.settle()
        assert link.server.ended == [1]
        link.conn.data_received(raw_frame(GOAWAY, 0, 0, struct.pack(">LL", 1, 0)))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not tasks[0].done()  # stream 1 is still being answered
        assert [t.done() for t in tasks[1:]] == [True] * 3
        for t in tasks[1:]:
            await fails(t)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# --- 8. PING --------------------------------------------------------------------------


async def test_ping_is_answered_with_the_same_payload() -> None:
    link = await connect()
    link.server.h2.ping(b"\x00\x01pong\xfe\xff")
    await link.settle()
    (ack,) = link.server.of(h2.events.PingAckReceived)
    assert ack.ping_data == b"\x00\x01pong\xfe\xff"
    # pings among requests
    link.server.auto = False
    task = link.request()
    await link.settle()
    link.server.h2.ping(b"12345678")
    echo(link.server, 1)
    await link.settle()
    assert (await got(task)).status == 200
    assert [a.ping_data for a in link.server.of(h2.events.PingAckReceived)][-1] == b"12345678"


# --- 9. protocol violations -----------------------------------------------------------


def _corrupt_hpack(link: Link) -> bytes:
    return raw_frame(HEADERS, END_HEADERS, 1, b"\x80")  # indexed field 0: no such entry


def _bad_dynamic_index(link: Link) -> bytes:
    return raw_frame(HEADERS, END_HEADERS, 1, b"\xff\x40")  # index 191: the table is empty


VIOLATIONS: dict[str, tuple[Callable[[Link], bytes], int]] = {
    "push promise": (lambda link: raw_frame(PUSH_PROMISE, END_HEADERS, 1,
                                            struct.pack(">L", 2) + b"\x82\x87"),
                     ErrorCodes.PROTOCOL_ERROR),
    "data on stream 0": (lambda link: raw_frame(DATA, 0, 0, b"oops"), ErrorCodes.PROTOCOL_ERROR),
    "corrupt hpack": (_corrupt_hpack, ErrorCodes.COMPRESSION_ERROR),
    "bad dynamic index": (_bad_dynamic_index, ErrorCodes.COMPRESSION_ERROR),
    "header block interrupted": (lambda link: raw_frame(HEADERS, 0, 1, b"\x88")
                                 + raw_frame(DATA, 0, 1, b"x"), ErrorCodes.PROTOCOL_ERROR),
    "continuation without headers": (lambda link: raw_frame(CONTINUATION, END_HEADERS, 1,
                                                            b"\x88"), ErrorCodes.PROTOCOL_ERROR),
    "frame over max size": (lambda link: raw_frame(DATA, 0, 1, b"x" * 16_385),
                            ErrorCodes.FRAME_SIZE_ERROR),
    "bad padding": (lambda link: raw_frame(DATA, PADDED, 1, b"\x05abc"),
                    ErrorCodes.PROTOCOL_ERROR),
    "ping on a stream": (lambda link: raw_frame(PING, 0, 1, b"12345678"),
                         ErrorCodes.PROTOCOL_ERROR),
    "settings ack with payload": (lambda link: raw_frame(SETTINGS, 1, 0, b"\0\3\0\0\0\1"),
                                  ErrorCodes.FRAME_SIZE_ERROR),
    "window update over 2^31-1": (lambda link: raw_frame(WINDOW_UPDATE, 0, 0,
                                                         struct.pack(">L", 2**31 - 1)),
                                  ErrorCodes.FLOW_CONTROL_ERROR),
}


@pytest.mark.parametrize("name", list(VIOLATIONS))
async def test_protocol_violation_fails_everything_and_sends_goaway(name: str) -> None:
    make, code = VIOLATIONS[name]
    link = await connect()
    link.server.auto = False
    tasks = [link.request(f"/{i}") for i in range(3)]
    await link.settle()
    assert link.server.ended == [1, 3, 5]
    link.transport.take()
    link.inject(make(link))
    for t in tasks:
        assert "protocol error" in str(await fails(t))
    assert link.conn.closed and link.transport.closing
    frames = parse_frames(link.transport.take())
    goaways = [p for k, _, s, p in frames if k == GOAWAY and s == 0]
    assert len(goaways) == 1
    assert struct.unpack_from(">LL", goaways[0]) == (0, code)
    # and h2 reads it as such
    (terminated,) = [e for e in link.server.h2.receive_data(raw_frame(GOAWAY, 0, 0,
                                                                      goaways[0]))
                     if isinstance(e, h2.events.ConnectionTerminated)]
    assert terminated.error_code == code
    with pytest.raises(H2Error):
        await link.conn.request("POST", AUTHORITY, "/new", {}, b"x")
    await asyncio.sleep(0)  # connection_lost from the closed transport: no harm


async def test_malformed_status_fails_the_request() -> None:
    link = await connect()
    link.server.auto = False
    task = link.request()
    await link.settle()
    block = link.server.h2.encoder.encode([(b":status", b"2xx")])
    link.conn.data_received(raw_frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
    await fails(task)


# --- 10. cancellation -----------------------------------------------------------------


async def test_cancelled_request_resets_its_stream_and_frees_the_slot() -> None:
    link = await connect({SettingCodes.MAX_CONCURRENT_STREAMS: 1})
    link.server.auto = False
    timeouts: list[asyncio.Timeout] = []

    async def timed() -> Response:
        async with asyncio.timeout(None) as cm:
            timeouts.append(cm)
            return await link.conn.request("POST", AUTHORITY, "/slow", {}, b"{}")

    slow = asyncio.create_task(timed())
    await link.settle()
    assert link.server.ended == [1]
    waiting = link.request("/next")  # waits for the slot
    await link.settle()
    assert list(link.server.requests) == [1]

    timeouts[0].reschedule(asyncio.get_running_loop().time())  # the caller's timeout
    with pytest.raises(TimeoutError):
        await slow
    link.server.auto = True
    await link.settle()
    (reset,) = link.server.of(h2.events.StreamReset)
    assert (reset.stream_id, reset.error_code) == (1, ErrorCodes.CANCEL)
    response = await got(waiting)
    assert response.headers["x-sid"] == "3"
    assert link.server.max_open == 1
    assert not link.conn.streams


async def test_cancelled_request_with_body_waiting_for_window() -> None:
    link = await connect({SettingCodes.INITIAL_WINDOW_SIZE: 100,
                          SettingCodes.MAX_CONCURRENT_STREAMS: 1}, ack_data=False)
    slow = link.request("/slow", body=b"s" * 5000)
    await link.settle()
    slow.cancel()
    await link.settle()
    assert slow.cancelled()
    link.server.ack_data = True
    link.server.acknowledge()
    fast = link.request("/fast", body=b"f" * 300)
    await link.settle()
    assert (await got(fast)).body == b"f" * 300
    assert link.server.bodies[1] == b"s" * 100  # nothing after the reset


async def test_cancelled_waiter_passes_its_slot_on() -> None:
    link = await connect({SettingCodes.MAX_CONCURRENT_STREAMS: 1})
    link.server.auto = False
    first = link.request("/1")
    await link.settle()
    second, third = link.request("/2"), link.request("/3")
    await link.settle()
    # the answer to 1 frees the slot and wakes the second, which is cancelled before it
    # runs: the third must get the slot
    echo(link.server, 1)
    link.server.ended.clear()
    link.conn.data_received(link.server.h2.data_to_send())
    second.cancel()
    link.server.auto = True
    await link.settle()
    assert (await got(first)).status == 200
    assert second.cancelled()
    assert (await got(third)).headers["x-sid"] == "3"
    assert [dict(f)[b":path"] for f in link.server.requests.values()] == [b"/1", b"/3"]


async def test_cancelled_waiter_before_its_turn() -> None:
    link = await connect({SettingCodes.MAX_CONCURRENT_STREAMS: 1})
    link.server.auto = False
    first = link.request("/1")
    await link.settle()
    second, third = link.request("/2"), link.request("/3")
    await link.settle()
    second.cancel()
    await link.settle()
    link.server.auto = True
    link.server.answer_all()
    await link.settle()
    assert (await got(first)).status == 200 and (await got(third)).status == 200
    assert second.cancelled()


async def test_early_response_while_body_waits_for_window() -> None:
    """The server answers before reading the whole body (e.g. 413): the request
    completes, and the stream must not stay open on the server (its slot under
    MAX_CONCURRENT_STREAMS 1 is needed by the next request)."""

    link = await connect({SettingCodes.INITIAL_WINDOW_SIZE: 100,
                          SettingCodes.MAX_CONCURRENT_STREAMS: 1}, ack_data=False)
    link.server.auto = False
    task = link.request(body=b"e" * 5000)
    await link.settle()
    link.server.send_response(1, 413, [], b"too large")
    await link.settle()
    assert (await got(task)).status == 413
    # the client must close its side (END_STREAM or RST_STREAM) for the server to
    # free the stream
    assert link.server.h2.open_inbound_streams == 0
    link.server.ack_data, link.server.auto = True, True
    link.server.acknowledge()
    nxt = link.request(body=b"n")
    await link.settle()
    assert (await got(nxt)).body == b"n"


# --- 11. connection lost --------------------------------------------------------------


async def test_connection_lost_fails_open_and_waiting_requests() -> None:
    link = await connect({SettingCodes.MAX_CONCURRENT_STREAMS: 2,
                          SettingCodes.INITIAL_WINDOW_SIZE: 100}, ack_data=False)
    link.server.auto = False
    tasks = [link.request(f"/{i}", body=b"w" * 500) for i in range(4)]  # 2 open, 2 waiting
    await link.settle()
    link.conn.connection_lost(ConnectionResetError("reset by peer"))
    for t in tasks:
        err = await fails(t)
        assert "connection" in str(err)
    assert link.conn.closed and link.transport.closing
    assert not link.conn.streams
    with pytest.raises(H2Error):
        await link.conn.request("POST", AUTHORITY, "/new", {}, b"x")


async def test_connection_lost_before_settings_fails_ready() -> None:
    conn = _Connection(10)
    transport = FakeTransport()
    transport.protocol = conn
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.connection_lost(None)
    with pytest.raises(H2Error):
        await conn.ready
    await asyncio.sleep(0)
