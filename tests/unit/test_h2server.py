"""Interop of the fake providers' HTTP/2 server (``pushgate._h2.server``) with the
``h2`` library as the client, in memory (``tests/support/h2.py``): preface and
SETTINGS, requests, response encoding, HPACK integers. Flow control and stream
limits: ``test_h2server_flow.py``; PING, resets, GOAWAY, protocol errors:
``test_h2server_errors.py``."""

from __future__ import annotations

import asyncio
import random

import h2.events
import h2.exceptions
import hpack
import hpack.hpack
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from pushgate._h2.frames import CONN_WINDOW_BONUS, STREAM_WINDOW
from pushgate._h2.hpack import FieldEncoder, hpack_int
from pushgate._h2.server import Reply, Request, _Connection
from tests.support.h2 import (
    ACK,
    AUTHORITY,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PREFACE,
    SETTINGS,
    FakeTransport,
    Handler,
    PeerClient,
    ServerLink,
    goaways,
    parse_frames,
    randtext,
    raw_frame,
    server_connection,
    server_link,
)

# --- 1. preface and SETTINGS ----------------------------------------------------------


async def test_server_settings_and_acks() -> None:
    link = await server_link(max_streams=7)
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
    conn = server_connection(handler, 10, live)
    transport = FakeTransport.attach(conn)
    client = PeerClient()
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
    conn = server_connection(handler, 10, live)
    transport = FakeTransport.attach(conn)
    start = len(transport.log)
    conn.data_received(NOT_PREFACES[name])
    assert transport.closing
    assert goaways(parse_frames(bytes(transport.log[start:]))) == [(0, ErrorCodes.PROTOCOL_ERROR)]
    assert not handler.requests
    await asyncio.sleep(0)  # connection_lost from the closed transport
    assert not live


async def test_short_non_preface_is_refused_at_once() -> None:
    conn = server_connection(Handler())
    transport = FakeTransport.attach(conn)
    conn.data_received(b"GET / HTTP/1.0\r\n\r\n")  # 18 bytes; the client now waits
    assert transport.closing


async def test_client_default_enable_push_is_accepted() -> None:
    link = await server_link({SettingCodes.ENABLE_PUSH: 1})
    sid = link.client.request("/x", body=b"y")
    await link.settle()
    assert link.client.status(sid) == 200


# --- 2. requests ----------------------------------------------------------------------


async def test_get_without_body() -> None:
    link = await server_link(reply=lambda req: (204, {"x-seen": req.method + " " + req.path}, b""))
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
    link = await server_link()
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
    link = await server_link(reply=lambda req: (200, {"x-length": str(len(req.body))}, b""))
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


async def send_many(link: ServerLink, start: int, count: int, auth: str) -> dict[int, int]:
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
    link = await server_link()
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
    link = await server_link()
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
    link = await server_link(reply=lambda req: (200, {"x-big": big} if req.path == "/big" else
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
    link = await server_link()
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


# --- 3. response encoding -------------------------------------------------------------


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


async def answer_many(link: ServerLink, start: int, count: int) -> None:
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
    link = await server_link(reply=provider_reply, max_streams=1000)
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
    link = await server_link(reply=provider_reply, max_streams=1000)
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
    link = await server_link(reply=lambda req: (status, {}, b"" if status == 200 else b"e"))
    sids = [link.client.request(f"/{i}") for i in range(3)]
    await link.settle()
    assert [link.client.status(s) for s in sids] == [status] * 3


# --- 4. HPACK integers ----------------------------------------------------------------


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
