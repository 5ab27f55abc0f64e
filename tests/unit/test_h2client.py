"""Interop of the lean HTTP/2 client (``pushgate._h2.client``) with the ``h2`` library
as the server, in memory (``tests/support/h2.py``): requests and responses, HPACK,
CONTINUATION, PING. Flow control and stream limits: ``test_h2client_flow.py``; resets,
GOAWAY, protocol errors: ``test_h2client_errors.py``."""

from __future__ import annotations

import asyncio
import random
import struct

import h2.events
import hpack
from h2.settings import SettingCodes

from pushgate._h2 import hpack as h2hpack
from pushgate._h2.client import Response
from pushgate._h2.hpack import FieldEncoder
from pushgate.router.bridge.apns import NOT_INDEXED as APNS_NOT_INDEXED
from tests.support.h2 import (
    AUTHORITY,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PADDED,
    PRIORITY,
    PRIORITY_FLAG,
    ClientLink,
    PeerServer,
    client_link,
    echo_response,
    got,
    parse_frames,
    raw_frame,
)

# --- 1. a request and its response ----------------------------------------------------


async def test_handshake() -> None:
    link = await client_link()
    (changed,) = link.server.of(h2.events.RemoteSettingsChanged)
    assert changed.changed_settings[SettingCodes.ENABLE_PUSH].new_value == 0
    assert link.server.h2.remote_settings.enable_push == 0
    assert link.server.of(h2.events.SettingsAcknowledged)  # the client acked ours
    assert link.conn.ready.done() and not link.conn.closed


async def test_post_pseudo_headers_headers_and_body() -> None:
    link = await client_link()
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
    link = await client_link()
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
    def respond(server: PeerServer, sid: int) -> None:
        server.h2.send_headers(sid, [(":status", "410"), ("apns-id", "X-1"),
                                     ("content-type", "application/json")])
        server.h2.send_data(sid, b'{"reason":', pad_length=7)
        server.h2.send_data(sid, b'"Unregistered",', pad_length=0)
        server.h2.send_data(sid, b"", pad_length=30)
        server.h2.send_data(sid, b'"timestamp":1}', end_stream=True, pad_length=255)

    link = await client_link(respond=respond)
    task = link.request()
    await link.settle()
    assert await got(task) == Response(410, {"apns-id": "X-1", "content-type": "application/json"},
                                  b'{"reason":"Unregistered","timestamp":1}')


async def test_informational_response_then_final_with_trailers() -> None:
    def respond(server: PeerServer, sid: int) -> None:
        server.h2.send_headers(sid, [(":status", "103"), ("link", "</a>")])
        server.send_response(sid, 201, [("x-a", "1")], b"part1" * 1000,
                             trailers=[("x-checksum", "abc")])

    link = await client_link(respond=respond)
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
    link = await client_link()
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

    def respond(server: PeerServer, sid: int) -> None:
        server.send_response(sid, 200, [], big)

    link = await client_link(respond=respond)
    task = link.request()
    await link.settle()
    response = await got(task)
    assert len(response.body) == len(big) and response.body == big


async def test_requests_of_one_loop_turn_leave_in_one_write() -> None:
    link = await client_link()
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


async def _check_many(link: ClientLink, start: int, count: int, auth: str) -> None:
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
    link = await client_link()
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
    link = await client_link()
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
    link = await client_link()
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
    encoder, decoder = FieldEncoder(not_indexed=APNS_NOT_INDEXED), hpack.Decoder()
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


def test_not_indexed_names_are_the_callers() -> None:
    """The default names only protocol headers; the APNs provider adds its own, which
    then stay literals however often they repeat."""
    assert not [name for name in h2hpack.NOT_INDEXED if not name.startswith(":")
                and name not in ("content-length", "retry-after")]
    assert {"apns-id", "apns-expiration", "apns-unique-id"} <= APNS_NOT_INDEXED
    generic, apns = FieldEncoder(), FieldEncoder(not_indexed=APNS_NOT_INDEXED)
    fields = [("apns-id", "id-1")]
    for _ in range(2):
        generic.block(fields)
        apns.block(fields)
    assert generic.block(fields) == b"\xbe"  # indexed: the first dynamic entry (62)
    assert apns.block(fields) == b"\x00\x07apns-id\x04id-1"
    assert apns.inserted == 0


# --- 3. CONTINUATION ------------------------------------------------------------------


async def test_large_request_header_block_uses_continuation() -> None:
    link = await client_link()
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
    link = await client_link({SettingCodes.MAX_FRAME_SIZE: 1 << 15})
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

    def respond(server: PeerServer, sid: int) -> None:
        if sid == 1:  # (h2 Huffman-codes them: ~0.2 s each, so only two big blocks)
            server.send_response(sid, 200, [("x-big", big), ("x-after", "a")], b"body",
                                 trailers=[("x-trailer-big", big[:20_000:-1])])
        else:
            echo_response(server, sid)

    link = await client_link(respond=respond)
    tasks = [link.request(f"/{i}", body=b"%d" % i) for i in range(3)]
    await link.settle()
    response = await tasks[0]
    assert response.headers["x-big"] == big
    assert response.headers["x-after"] == "a"
    assert response.headers["x-trailer-big"] == big[:20_000:-1]
    assert response.body == b"body"
    # the client's HPACK decoder is still in step with h2's encoder
    assert [(await got(t)).headers for t in tasks[1:]] == [{"x-sid": "3"}, {"x-sid": "5"}]


# --- 4. PING --------------------------------------------------------------------------


async def test_ping_is_answered_with_the_same_payload() -> None:
    link = await client_link()
    link.server.h2.ping(b"\x00\x01pong\xfe\xff")
    await link.settle()
    (ack,) = link.server.of(h2.events.PingAckReceived)
    assert ack.ping_data == b"\x00\x01pong\xfe\xff"
    # pings among requests
    link.server.auto = False
    task = link.request()
    await link.settle()
    link.server.h2.ping(b"12345678")
    echo_response(link.server, 1)
    await link.settle()
    assert (await got(task)).status == 200
    assert [a.ping_data for a in link.server.of(h2.events.PingAckReceived)][-1] == b"12345678"
