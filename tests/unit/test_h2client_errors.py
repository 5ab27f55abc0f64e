"""The HTTP/2 client (``pushgate._h2.client``) against the ``h2`` library as the
server, in memory (``tests/support/h2.py``): stream resets, GOAWAY, protocol
violations and a lost connection: which requests fail, and how."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

import h2.events
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from pushgate._h2.client import H2Error, Response, _Connection
from tests.support.h2 import (
    AUTHORITY,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PUSH_PROMISE,
    SETTINGS,
    WINDOW_UPDATE,
    ClientLink,
    FakeTransport,
    PeerServer,
    client_link,
    drain,
    echo_response,
    fails,
    got,
    parse_frames,
    raw_frame,
)

# --- 1. RST_STREAM --------------------------------------------------------------------


async def test_stream_reset_fails_only_that_request() -> None:
    def respond(server: PeerServer, sid: int) -> None:
        if sid == 3:
            server.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
        else:
            echo_response(server, sid)

    link = await client_link(respond=respond)
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
    link = await client_link({SettingCodes.INITIAL_WINDOW_SIZE: 100}, ack_data=False)
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


# --- 2. GOAWAY ------------------------------------------------------------------------


async def test_goaway_fails_streams_above_last_id_only() -> None:
    link = await client_link()
    link.server.auto = False
    tasks = [link.request(f"/{i}", body=b"%d" % i) for i in range(4)]  # streams 1, 3, 5, 7
    await link.settle()
    assert link.server.ended == [1, 3, 5, 7]
    # GOAWAY(last 3) ahead of the answers to 1 and 3 (raw: h2 sends nothing after it)
    echo_response(link.server, 1)
    echo_response(link.server, 3)
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
    link = await client_link()
    link.server.auto = False
    tasks = [link.request(f"/{i}") for i in range(3)]
    await link.settle()
    echo_response(link.server, 1)
    link.server.h2.close_connection(ErrorCodes.NO_ERROR, last_stream_id=1)
    await link.settle()
    assert (await tasks[0]).status == 200
    await fails(tasks[1])
    await fails(tasks[2])
    assert link.conn.closed and link.transport.closing
    with pytest.raises(H2Error):
        await link.conn.request("POST", AUTHORITY, "/new", {}, b"x")


async def test_goaway_fails_requests_waiting_for_a_slot() -> None:
    link = await client_link({SettingCodes.MAX_CONCURRENT_STREAMS: 1})
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


# --- 3. protocol violations -----------------------------------------------------------


def _corrupt_hpack(link: ClientLink) -> bytes:
    return raw_frame(HEADERS, END_HEADERS, 1, b"\x80")  # indexed field 0: no such entry


def _bad_dynamic_index(link: ClientLink) -> bytes:
    return raw_frame(HEADERS, END_HEADERS, 1, b"\xff\x40")  # index 191: the table is empty


VIOLATIONS: dict[str, tuple[Callable[[ClientLink], bytes], int]] = {
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
    link = await client_link()
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
    link = await client_link()
    link.server.auto = False
    task = link.request()
    await link.settle()
    block = link.server.h2.encoder.encode([(b":status", b"2xx")])
    link.conn.data_received(raw_frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
    await fails(task)


# --- 4. connection lost ---------------------------------------------------------------


async def test_connection_lost_fails_open_and_waiting_requests() -> None:
    link = await client_link({SettingCodes.MAX_CONCURRENT_STREAMS: 2,
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
    FakeTransport.attach(conn)
    conn.connection_lost(None)
    with pytest.raises(H2Error):
        await conn.ready
    await asyncio.sleep(0)


# --- 6. a server that goes silent ---------------------------------------------------------


async def _run_until_done(link: ClientLink, task: asyncio.Task[Response], *,
                          move: bool) -> None:
    """Let ``task`` finish (within 5 s), moving bytes both ways meanwhile if ``move``
    (a live server: it ACKs PINGs) or not at all (a half-open connection)."""
    async with asyncio.timeout(5):
        while not task.done():
            if move:
                await link.settle()
            await asyncio.sleep(0.02)


async def test_a_connection_that_went_silent_is_failed_and_not_used_again() -> None:
    """A request timed out and nothing at all came from the server for a whole timeout
    (not even the ACK of the PING sent meanwhile): the connection is dead (half-open, a
    wedged peer). It is failed, so that the client opens a new one, instead of timing
    every later push out on it until TCP gives up (~15 minutes)."""
    link = await client_link()
    link.conn.timeout_s = 1.0
    link.server.auto = False
    task = link.request(body=b"lost")
    await _run_until_done(link, task, move=False)
    assert (await fails(task)).kind == "timeout"
    assert link.conn.closed
    sent = parse_frames(link.transport.take())
    assert PING in {f[0] for f in sent}  # it was asked whether it is still there


async def test_a_slow_server_that_answers_pings_keeps_its_connection() -> None:
    link = await client_link()
    link.conn.timeout_s = 1.0
    link.server.auto = False  # the request is never answered, PINGs are
    task = link.request(body=b"slow")
    await _run_until_done(link, task, move=True)
    assert (await fails(task)).kind == "timeout"
    assert not link.conn.closed
    link.server.auto = True
    later = link.request(body=b"later")
    await link.settle()
    link.server.acknowledge()
    await link.settle()
    assert (await got(later)).body == b"later"
