"""The HTTP/2 client (``pushgate._h2.client``) against the ``h2`` library as the
server, in memory (``tests/support/h2.py``): flow control, ``MAX_CONCURRENT_STREAMS``
and cancelled requests."""

from __future__ import annotations

import asyncio
import random

import h2.events
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from pushgate._h2.client import Response
from tests.support.h2 import (
    AUTHORITY,
    client_link,
    drain,
    echo_response,
    got,
)

# --- 1. flow control ------------------------------------------------------------------


async def test_body_waits_for_small_stream_window() -> None:
    link = await client_link({SettingCodes.INITIAL_WINDOW_SIZE: 100}, ack_data=False)
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
    link = await client_link({SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20}, ack_data=False)
    body = random.Random(4).randbytes(300_000)
    task = link.request(body=body)
    await link.settle()
    assert len(link.server.bodies[1]) == 65_535
    assert max(link.server.data_frames[1]) <= 16_384  # the server's MAX_FRAME_SIZE
    await drain(link, task)
    assert (await got(task)).body == body
    assert link.server.bodies[1] == body


async def test_concurrent_large_bodies_share_the_windows() -> None:
    link = await client_link({SettingCodes.INITIAL_WINDOW_SIZE: 1000})
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
    link = await client_link({SettingCodes.INITIAL_WINDOW_SIZE: 100}, ack_data=False)
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
    link = await client_link({SettingCodes.INITIAL_WINDOW_SIZE: 1000}, ack_data=False)
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


# --- 2. MAX_CONCURRENT_STREAMS --------------------------------------------------------


async def test_max_concurrent_streams_is_respected() -> None:
    link = await client_link({SettingCodes.MAX_CONCURRENT_STREAMS: 2})
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
    link = await client_link({SettingCodes.MAX_CONCURRENT_STREAMS: 1}, max_streams=10)
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
    link = await client_link(max_streams=3)
    link.server.auto = False
    tasks = [link.request(f"/{i}") for i in range(7)]
    await link.settle()
    assert len(link.server.ended) == 3
    link.server.auto = True
    link.server.answer_all()
    await link.settle()
    assert [(await got(t)).status for t in tasks] == [200] * 7
    assert link.server.max_open == 3


# --- 3. cancellation ------------------------------------------------------------------


async def test_cancelled_request_resets_its_stream_and_frees_the_slot() -> None:
    link = await client_link({SettingCodes.MAX_CONCURRENT_STREAMS: 1})
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
    link = await client_link({SettingCodes.INITIAL_WINDOW_SIZE: 100,
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
    link = await client_link({SettingCodes.MAX_CONCURRENT_STREAMS: 1})
    link.server.auto = False
    first = link.request("/1")
    await link.settle()
    second, third = link.request("/2"), link.request("/3")
    await link.settle()
    # the answer to 1 frees the slot and wakes the second, which is cancelled before it
    # runs: the third must get the slot
    echo_response(link.server, 1)
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
    link = await client_link({SettingCodes.MAX_CONCURRENT_STREAMS: 1})
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

    link = await client_link({SettingCodes.INITIAL_WINDOW_SIZE: 100,
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
