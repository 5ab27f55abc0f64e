"""The fake providers' HTTP/2 server (``pushgate._h2.server``) against the ``h2``
library as the client, in memory (``tests/support/h2.py``): flow control of the
responses and ``MAX_CONCURRENT_STREAMS``."""

from __future__ import annotations

import h2.events
import h2.exceptions
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from pushgate._h2.server import Request
from tests.support.h2 import (
    DATA,
    big_reply,
    held_response,
    server_link,
    sid_paths,
)

# --- 1. flow control of responses -----------------------------------------------------


async def test_response_waits_for_a_tiny_stream_window() -> None:
    link, body, sid = await held_response(100, 5000)
    c = link.client
    assert bytes(c.bodies[sid]) == body[:100]  # exactly the window, no more
    assert sid not in c.ended and sid in link.conn.streams
    await link.drain(lambda: sid in c.ended)
    assert bytes(c.bodies[sid]) == body  # whole and in order
    assert max(c.chunks[sid]) <= 100
    assert c.headers(sid)["content-length"] == "5000"
    assert not link.conn.streams


async def test_response_waits_for_the_connection_window() -> None:
    link = await server_link({SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20}, reply=big_reply(200_000))
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
    link = await server_link({SettingCodes.MAX_FRAME_SIZE: 1 << 16}, reply=big_reply(50_000))
    since = len(link.transport.log)
    sid = link.client.request()
    await link.settle()
    assert [len(p) for k, _, s, p in link.server_frames(since) if k == DATA and s == sid] == [
        50_000]
    assert len(link.client.bodies[sid]) == 50_000


async def test_initial_window_size_raised_mid_transfer() -> None:
    link, body, sid = await held_response(100, 5000)
    c = link.client
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
    link, body, sid = await held_response(1000, 3000)
    c = link.client
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
    link = await server_link({SettingCodes.INITIAL_WINDOW_SIZE: 100}, max_streams=1,
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


# --- 2. MAX_CONCURRENT_STREAMS --------------------------------------------------------


async def test_third_concurrent_stream_is_refused() -> None:
    link = await server_link(max_streams=2)
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


async def test_trailers_on_a_refused_stream_are_ignored() -> None:
    link = await server_link(max_streams=1)
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
