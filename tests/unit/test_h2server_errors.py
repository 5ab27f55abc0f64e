"""The fake providers' HTTP/2 server (``pushgate._h2.server``) against the ``h2``
library as the client, in memory (``tests/support/h2.py``): PING, resets from the
client, GOAWAY both ways and protocol violations (GOAWAY with the right code and
last stream id, then close)."""

from __future__ import annotations

import asyncio
import struct

import h2.events
import h2.exceptions
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from tests.support.h2 import (
    ACK,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PREFACE,
    PRIORITY,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    FakeTransport,
    Handler,
    ServerLink,
    big_reply,
    goaways,
    held_response,
    parse_frames,
    raw_frame,
    server_connection,
    server_link,
    sid_paths,
)

GET_BLOCK = b"\x82\x87\x84"  # :method GET, :scheme https, :path / (static table only)


# --- 1. PING, RST_STREAM, GOAWAY ------------------------------------------------------


async def test_ping_is_answered_with_the_same_payload() -> None:
    link = await server_link()
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
    link = await server_link()
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
    link = await server_link({SettingCodes.INITIAL_WINDOW_SIZE: 100}, max_streams=1,
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
    link = await server_link()
    sid = link.client.request("/1", body=b"x")
    await link.settle()
    assert link.client.status(sid) == 200
    link.client.h2.close_connection()
    await link.settle()
    assert link.transport.closing
    await asyncio.sleep(0)
    assert not link.live


async def test_client_goaway_waits_for_a_response_held_by_flow_control() -> None:
    link, body, sid = await held_response(100, 5000)
    c = link.client
    link.inject(GOAWAY_FRAME)  # raw: h2 would stop reading after its own GOAWAY
    await link.settle()
    assert not link.transport.closing
    await link.drain(lambda: sid in c.ended)
    assert bytes(c.bodies[sid]) == body
    await asyncio.sleep(0)
    assert link.transport.closing  # once the response has fully left


async def test_client_goaway_closes_after_a_request_in_progress_is_answered() -> None:
    link = await server_link()
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
    link = await server_link()
    sid = link.client.request("/1", body=b"last")
    link.inject(GOAWAY_FRAME)
    link.client.receive(link.transport.take())
    assert link.handler.requests  # the handler ran...
    assert bytes(link.client.bodies.get(sid, b"")) == b"last"  # ...the response is lost


# --- 2. protocol violations -----------------------------------------------------------


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


async def violation_link() -> tuple[ServerLink, int]:
    link = await server_link()
    c = link.client
    answered = c.request("/answered", body=b"a")
    in_progress = c.request("/in-progress", body=b"part", end=False, sid=5)
    await link.settle()
    assert (answered, in_progress) == (1, 5)
    assert c.status(answered) == 200 and sid_paths(link) == ["/answered"]
    return link, in_progress


async def check_goaway(link: ServerLink, raw: bytes, code: int) -> None:
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
    conn = server_connection(Handler())
    transport = FakeTransport.attach(conn)
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
