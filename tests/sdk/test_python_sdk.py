"""The Python SDK against the real gateway process: restarts, kicks, token expiry,
dead links, requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from pushgate_client import (
    Client,
    Event,
    Kicked,
    RequestError,
    State,
    TokenExpired,
    Unauthorized,
    token_expiry,
)

from tests.sdk.conftest import Sender, http_head, make_server, stored_seqs
from tests.support.server import ServerProcess, running_server
from tests.support.waiting import wait_for


async def collect(client: Client, into: list[Event]) -> None:
    async for e in client:
        into.append(e)


def assert_exactly_once_in_order(got: list[Event], acked: list[int], stored: list[int]) -> None:
    seqs = [e.seq for e in got]
    assert all(s is not None for s in seqs)
    assert seqs == sorted(set(seqs)), "duplicates or out of order"  # type: ignore[type-var]
    missing = set(acked) - set(seqs)  # type: ignore[arg-type]
    assert not missing, f"{len(missing)} acknowledged events never reached the app: {sorted(missing)[:10]}"
    assert seqs == stored, "the app saw exactly the stored events"


async def test_server_killed_and_restarted_while_sending(tmp_path: Path) -> None:
    # a small fetch limit also bounds the backlog on connect: the rest must be fetched
    srv = make_server(tmp_path, "--fetch-max-limit", "5")
    srv.start()
    user = "alice"
    states: list[State] = []
    client = Client(srv.base_url, token_provider=lambda: srv.token(user), after=0,
                    backoff_base=0.2, backoff_cap=2.0, connect_timeout=3,
                    on_state=states.append)
    got: list[Event] = []
    sender = Sender(srv, user)
    try:
        async with client:
            reader = asyncio.create_task(collect(client, got))
            await client.wait_connected(10)
            send_task = asyncio.create_task(sender.run())

            async def more_sends(n: int = 30) -> None:
                target = len(sender.acked) + n
                await wait_for(lambda: len(sender.acked) >= target, 15, f"{n} more sends")

            for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL):
                await more_sends()
                # in threads: the sender and the client keep running meanwhile
                await asyncio.to_thread(srv.stop, sig)
                await asyncio.sleep(0.3)  # the sender keeps retrying against a dead port
                await asyncio.to_thread(srv.start)
                await client.wait_connected(15)
            await more_sends()
            sender.stop()
            await send_task
            head = await http_head(srv, user)
            await wait_for(lambda: client.last_seq == head, 15, f"client at head {head}")
            stored = await stored_seqs(srv, user, limit=5)
            reader.cancel()
        assert client.connects >= 4
        assert sender.retries > 0, "the sender never hit the outage"
        assert_exactly_once_in_order(got, sender.acked, stored)
        assert len(got) >= 120
        assert client.fetches > 0, "the gap-fetch path was not exercised"
        assert states.count(State.CONNECTED) == client.connects
    finally:
        srv.stop()


async def test_kicked_client_stops_and_reports_why(server: ServerProcess) -> None:
    attempts = 0

    def token() -> str:
        nonlocal attempts
        attempts += 1
        return server.token("kim")

    first = Client(server.base_url, token_provider=token, backoff_base=0.05, backoff_cap=0.1)
    others = [Client(server.base_url, token=server.token("kim")) for _ in range(5)]
    try:
        await first.wait_connected(10)
        kicked_session = first.session
        for c in others:
            await c.wait_connected(10)
        with pytest.raises(Kicked) as info:
            await asyncio.wait_for(first.wait_closed(), 10)
        assert info.value.code == 4102
        assert info.value.kicked_reason == "quota"
        assert info.value.by == others[-1].session
        assert first.state is State.DISCONNECTED and first.closed
        with pytest.raises(Kicked):
            async for _ in first:
                pass
        await asyncio.sleep(1.0)  # it must not come back (and kick another one)
        assert attempts == 1 and first.connects == 1
        assert all(c.state is State.CONNECTED for c in others)
        async with server.http() as http:
            sessions = (await http.get("/v1/users/kim/sessions")).json()["sessions"]
        assert kicked_session not in {s["session"] for s in sessions}
        assert len(sessions) == 5
    finally:
        for c in [first, *others]:
            await c.close()


async def test_expired_token_is_refreshed_and_nothing_is_lost(tmp_path: Path) -> None:
    # the sweeper closes sessions with an expired token every min(5, idle/4) s
    with running_server(tmp_path, "--idle-timeout-s", "4") as srv:
        issued: list[float] = []

        async def provider() -> str:
            issued.append(time.time())
            return srv.token("tom", ttl=2)

        # refresh_margin=None: no early refresh, so the server's 4101 is what we test
        client = Client(srv.base_url, token_provider=provider, after=0, refresh_margin=None,
                        backoff_base=0.05)
        got: list[Event] = []
        sender = Sender(srv, "tom", interval=0.05)
        closes: list[int] = []
        client.add_state_listener(
            lambda s: closes.append(client.last_close.code)
            if s is State.CONNECTED and client.last_close else None)
        async with client:
            reader = asyncio.create_task(collect(client, got))
            send_task = asyncio.create_task(sender.run())
            await wait_for(lambda: client.connects >= 3, 30, "two refreshes")
            sender.stop()
            await send_task
            head = await http_head(srv, "tom")
            await wait_for(lambda: client.last_seq == head, 15, "catch-up")
            reader.cancel()
            assert client.state is State.CONNECTED
        assert 4101 in closes
        assert len(issued) >= 3
        assert_exactly_once_in_order(got, sender.acked, await stored_seqs(srv, "tom"))


async def test_token_is_refreshed_before_it_expires(server: ServerProcess) -> None:
    calls = 0

    def provider() -> str:
        nonlocal calls
        calls += 1
        return server.token("una", ttl=3)

    async with Client(server.base_url, token_provider=provider, refresh_margin=10) as client:
        await wait_for(lambda: client.connects >= 2, 10, "an early refresh")
        assert client.last_close is not None
        assert client.last_close.by_client and client.last_close.code == 1000  # not 4101
        assert calls >= 2


async def test_a_caching_provider_does_not_make_the_client_reconnect_with_the_same_token(
        server: ServerProcess) -> None:
    """clients.md, tokens: a provider backed by a cache hands out the token in use until
    its cache renews it (here 3 s before exp): asked early, it returns the same token,
    and the client keeps its session (asking again later) instead of reconnecting with
    it; it reconnects once, with the new token, and is never closed 4101."""
    minted: list[tuple[str, float]] = []

    def cached() -> str:
        if not minted or time.time() >= minted[-1][1] - 3:
            token = server.token("uma", ttl=8)
            minted.append((token, float(token_expiry(token) or 0)))
        return minted[-1][0]

    async with Client(server.base_url, token_provider=cached, refresh_margin=10) as client:
        await wait_for(lambda: len(minted), 15, "a renewed token", until=lambda n: n >= 2)
        await wait_for(lambda: client.connects, 5, "the reconnect with it",
                       until=lambda n: n >= 2)
        assert client.connects == 2, client.connects
        assert client.last_close is not None
        assert (client.last_close.code, client.last_close.by_client) == (1000, True)


async def test_a_provider_of_expired_tokens_is_asked_with_backoff_not_in_a_loop(
        server: ServerProcess) -> None:
    """Every token the provider gives is refused with 4101 (a stale cache, a skewed
    clock): the client keeps trying — a later token may be good — but each retry waits
    one backoff window longer, like a failed connect, instead of ~4 a second forever."""
    calls = 0

    def stale() -> str:
        nonlocal calls
        calls += 1
        return server.token("stale", ttl=-60)

    client = Client(server.base_url, token_provider=stale, backoff_base=0.02, backoff_cap=10)
    client.start()
    try:
        await wait_for(lambda: calls >= 5, 20, "five tokens asked for")
        assert client.last_close is not None and client.last_close.code == 4101
        assert client.backoff.attempt >= calls - 1, (client.backoff.attempt, calls)
        assert not client.closed and client.error is None  # still trying
    finally:
        await client.close()


async def test_static_token_expired_or_refused_stops(server: ServerProcess) -> None:
    expired = Client(server.base_url, token=server.token("vic", ttl=-60))
    with pytest.raises(TokenExpired):
        await asyncio.wait_for(expired.wait_closed(), 10)
    refused = 0

    def bad() -> str:
        nonlocal refused
        refused += 1
        return "not-a-jwt"

    client = Client(server.base_url, token_provider=bad, backoff_base=0.05)
    with pytest.raises(Unauthorized) as info:
        await asyncio.wait_for(client.wait_closed(), 10)
    assert info.value.code == 4100
    assert refused == 1  # the first token came from the provider already: no retry loop


async def test_watchdog_reconnects_over_a_silent_link(server: ServerProcess) -> None:
    client = Client(server.base_url, token=server.token("wes"), after=0, ping_interval=0.2,
                    watchdog_pings=3, connect_timeout=1, backoff_base=0.1, backoff_cap=0.5,
                    connect_options={"ping_interval": None})  # only our watchdog
    async with client:
        await client.wait_connected(10)
        assert server.pid is not None
        os.kill(server.pid, signal.SIGSTOP)  # the TCP link stays up, nothing answers
        try:
            await client.wait_state(State.DISCONNECTED, 5)
            assert client.last_close is not None and client.last_close.code == 1006
            assert client.last_close.reason == "watchdog"
        finally:
            os.kill(server.pid, signal.SIGCONT)
        await client.wait_connected(15)
        async with server.http() as http:
            r = await http.post("/v1/notifications", json={"users": ["wes"], "body": "after"})
            assert r.status_code == 200
        e = await asyncio.wait_for(anext(client), 10)
        assert e.body == "after" and e.seq == 1


async def test_requests_gaps_large_and_transient_events(server: ServerProcess) -> None:
    async with server.http() as http:
        for n in range(1, 4):  # history before the client exists
            await http.post("/v1/notifications", json={"users": ["ann"], "body": {"n": n}})
    client = Client(server.base_url, token=server.token("ann"), after=1, fetch_limit=2)
    async with client, server.http() as http:
        assert [e.seq for e in [await anext(client), await anext(client)]] == [2, 3]
        assert client.hello is not None and client.hello.head == 3
        big = {"blob": "x" * 6000}  # over inline_event_max_bytes: announced by `head` only
        r = await http.post("/v1/notifications", json={"users": ["ann"], "body": big})
        assert r.json()["results"][0]["seq"] == 4
        await http.post("/v1/notifications", json={"users": ["ann"], "body": {"n": 5}})
        await http.post("/v1/notifications", json={"users": ["ann"], "body": "psst", "ttl": 0})
        got = [await asyncio.wait_for(anext(client), 5) for _ in range(3)]
        stored = [e for e in got if not e.transient]
        assert [e.seq for e in stored] == [4, 5] and stored[0].body == big
        assert [e.body for e in got if e.transient] == ["psst"]
        # send-with-ack is answered by the SDK's automatic ack
        r = await http.post("/v1/notifications",
                            json={"users": ["ann"], "body": "ack me", "ack": True})
        assert r.status_code == 200 and r.json()["results"][0]["acked_by"] == client.session
        assert (await anext(client)).seq == 6

        res = await client.read(seqs=[2], ranges=[(3, 5)])
        assert (res.head, res.live, res.unread) == (6, 6, 2)
        state = await client.read_state()
        assert state.read == [(2, 5)] and state.unread == 2
        page = await client.fetch(after=0, limit=2)
        assert [e.seq for e in page.events] == [1, 2] and page.more and page.head == 6
        sent = await client.send({"hi": 1}, users=["bob"])
        assert sent.results[0]["user"] == "bob" and sent.results[0]["seq"] == 1
        assert sent.report is not None and sent.report.startswith("r-")  # its delivery report
        tagged = await client.send({"hi": 2}, users=["bob"], id="sdk-note-1")
        # a client's send id is its own: the report is the send's, not the server's
        assert tagged.report is not None and tagged.report.startswith("r-")
        assert tagged.report != sent.report
        with pytest.raises(RequestError) as err:
            await client.fetch(limit=100000)
        assert err.value.code == "invalid_request" and err.value.field == "limit"
        assert await client.ping() < 5


async def test_requests_inside_async_for_with_a_full_buffer(server: ServerProcess) -> None:
    """``await client.read(...)`` for each event of ``async for`` (the docs' pattern) with
    more history than ``buffer_size``: the reader waited for buffer space the loop would
    only make after the request, so every request ran into its timeout."""
    async with server.http() as http:
        for n in range(1, 41):
            r = await http.post("/v1/notifications", json={"users": ["kay"], "body": n})
            assert r.status_code == 200, r.text
    client = Client(server.base_url, token=server.token("kay"), after=0, buffer_size=5,
                    request_timeout=3)
    async with client:
        seen = []
        async with asyncio.timeout(20):
            async for e in client:
                state = await client.read(seqs=[e.seq])
                seen.append(e.seq)
                if e.seq == 40:
                    break
        assert seen == list(range(1, 41)) and state.unread == 0


async def test_a_retried_large_send_with_ack_is_acked_and_an_oversize_send_fails_alone(
        server: ServerProcess) -> None:
    """A send-with-ack of an event over the inline limit, retried with its id, is
    announced again by ``head`` only: the SDK acks the seq it already has (the retry got
    408 ``ack_timeout`` while the client was connected). A request over the server's
    ``max_frame_bytes`` fails alone with ``payload_too_large`` instead of the server's
    1009 close stopping the client."""
    client = Client(server.base_url, token=server.token("lee"))
    async with client, server.http() as http:
        await client.wait_state(State.CONNECTED)
        body = {"users": ["lee"], "body": {"blob": "x" * 6000}, "ack": True, "id": "big-1",
                "ack_timeout_ms": 3000}
        for attempt in range(2):
            r = await http.post("/v1/notifications", json=body)
            assert r.status_code == 200, (attempt, r.text)
            assert r.json()["results"][0]["acked_by"] == client.session
        assert (await anext(client)).seq == 1
        assert client.hello is not None
        limit = client.hello.limits.max_frame_bytes
        with pytest.raises(RequestError) as err:
            await client.send({"x": "y" * limit}, users=["lee"])
        assert (err.value.code, err.value.field) == ("payload_too_large", "body")
        assert await client.ping() < 5 and client.state is State.CONNECTED


async def test_a_server_whose_store_was_reset_is_read_again_from_seq_0(
        tmp_path: Path) -> None:
    """The gateway's database is replaced (reset, or restored from an older backup): its
    head is below the client's last seq and its new events reuse old seqs. The client
    passed over every new event up to its old seq; it starts over from 0 instead."""
    srv = make_server(tmp_path)
    srv.start()
    try:
        client = Client(srv.base_url, token_provider=lambda: srv.token("rae"), after=0,
                        backoff_base=0.1, backoff_cap=0.5)
        async with client:
            async with srv.http() as http:
                for n in range(5):
                    await http.post("/v1/notifications", json={"users": ["rae"], "body": n})
            assert [(await anext(client)).seq for _ in range(5)] == [1, 2, 3, 4, 5]
            await asyncio.to_thread(srv.stop)
            for f in srv.data_dir.glob("pushgate.db*"):
                f.unlink()
            await asyncio.to_thread(srv.start)
            async with srv.http() as http:
                for n in ("new-1", "new-2"):
                    await http.post("/v1/notifications", json={"users": ["rae"], "body": n})
            async with asyncio.timeout(15):
                got = [await anext(client) for _ in range(2)]
            assert [(e.seq, e.body) for e in got] == [(1, "new-1"), (2, "new-2")]
            assert client.last_seq == 2
    finally:
        srv.stop()


async def test_new_client_without_after_starts_at_head(server: ServerProcess) -> None:
    async with server.http() as http:
        await http.post("/v1/notifications", json={"users": ["ned"], "body": "old"})
        async with Client(server.base_url, token=server.token("ned")) as client:
            await client.wait_connected(10)
            assert client.last_seq == 1
            await http.post("/v1/notifications", json={"users": ["ned"], "body": "new"})
            e = await asyncio.wait_for(anext(client), 10)
            assert (e.seq, e.body) == (2, "new")


async def test_close_ends_iteration(server: ServerProcess) -> None:
    client = Client(server.base_url, token=server.token("ola"))
    await client.wait_connected(10)
    reader = asyncio.create_task(collect(client, []))
    await client.close()
    await asyncio.wait_for(reader, 5)  # StopAsyncIteration, no error
    assert client.closed and client.state is State.DISCONNECTED
    with contextlib.suppress(Exception):
        await client.wait_closed()


async def test_wait_closed_can_be_timed_out_and_cancelled(server: ServerProcess) -> None:
    client = Client(server.base_url, token=server.token("pia"))
    try:
        await client.wait_connected(10)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.wait_closed(), 0.3)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await client.wait_closed()
        waiter = asyncio.create_task(client.wait_closed())
        await asyncio.sleep(0)  # let it start waiting
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert waiter.cancelled()
        # none of that stopped the client
        assert client.state is State.CONNECTED and not client.closed
        assert await client.ping() < 5
        waiter = asyncio.create_task(client.wait_closed())
        await client.close()
        assert await asyncio.wait_for(waiter, 5) is None  # closed by the application
    finally:
        await client.close()


async def test_token_is_never_refreshed_before_half_its_life(server: ServerProcess) -> None:
    # (obtained, exp) of each token, and when the provider was asked for the next one
    tokens: list[tuple[float, float]] = []
    asked: list[float] = []
    refreshed = asyncio.Event()

    def provider() -> str:
        asked.append(time.time())
        token = server.token("rae", ttl=4)
        tokens.append((time.time(), float(token_expiry(token) or 0)))
        if len(tokens) >= 4:
            refreshed.set()
        return token

    # a margin longer than the life: the refresh comes at half the life, never earlier
    async with Client(server.base_url, token_provider=provider, refresh_margin=30) as client:
        await asyncio.wait_for(refreshed.wait(), 20)
        assert client.last_close is not None and client.last_close.code == 1000
    for (obtained, exp), at in zip(tokens, asked[1:], strict=False):
        assert at >= obtained + (exp - obtained) / 2, (
            f"refreshed {at - obtained:.2f} s into a {exp - obtained:.2f} s token")


async def test_last_seq_counts_only_events_the_app_has_taken(server: ServerProcess) -> None:
    async with server.http() as http:
        for n in range(1, 51):
            r = await http.post("/v1/notifications", json={"users": ["lou"], "body": {"n": n}})
            assert r.json()["results"][0]["seq"] == n
    client = Client(server.base_url, token=server.token("lou"), after=0)
    assert client.last_seq == 0
    async with client:
        assert (await asyncio.wait_for(anext(client), 10)).seq == 1
        await client.ping()  # the whole backlog came before the pong: it is buffered
        assert client.last_seq == 1
        for n in range(2, 11):
            assert (await asyncio.wait_for(anext(client), 10)).seq == n
        assert client.last_seq == 10
    # resuming from the persisted last_seq: the 40 events the app never took
    async with Client(server.base_url, token=server.token("lou"), after=client.last_seq) as again:
        got = [(await asyncio.wait_for(anext(again), 10)).seq for _ in range(40)]
        assert got == list(range(11, 51))
        assert again.last_seq == 50
        await again.ping()
        assert again.last_seq == 50


async def test_state_listeners_see_the_close_that_caused_the_change(tmp_path: Path) -> None:
    srv = make_server(tmp_path)
    srv.start()
    seen: list[tuple[State, int | None, str | None]] = []

    def on_state(s: State) -> None:
        close = client.last_close
        seen.append((s, close.code if close else None,
                     type(client.connect_error).__name__ if client.connect_error else None))

    client = Client(srv.base_url, token=srv.token("sue"), backoff_base=0.05, backoff_cap=0.2,
                    on_state=on_state)
    try:
        await client.wait_connected(10)
        await asyncio.to_thread(srv.stop, signal.SIGTERM)
        await wait_for(lambda: sum(s is State.DISCONNECTED for s, _, _ in seen) >= 2, 10,
                       "a close and a refused attempt")
        disconnects = [(code, err) for s, code, err in seen if s is State.DISCONNECTED]
        assert disconnects[0] == (4000, None)  # the server's close, set before the listeners
        # a refused attempt: its error, no close frame (read by the listener: the next
        # attempt, as soon as the full-jitter backoff allows, clears connect_error again)
        assert disconnects[1][1] is not None
    finally:
        await client.close()
        srv.stop()


async def test_the_watchdog_gives_up_three_ping_intervals_after_the_last_frame() -> None:
    """clients.md: a link that brought no frame for 3 ping intervals is replaced. Checked
    at the ping ticks only, it went a tick late (4 intervals) whenever the pongs took a
    round trip: at the third tick after the last pong the silence was short of 3."""
    from websockets.asyncio.server import serve

    last_frame: list[float] = []

    async def gateway(ws: Any) -> None:  # pongs a round trip late, silent after three
        await ws.send(json.dumps({"type": "hello", "session": "s", "user": "u", "head": 0,
                                  "unread": 0, "v": 1, "limits": {"idle_timeout_s": 60}}))
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("type") == "ping" and len(last_frame) < 3:
                await asyncio.sleep(0.1)
                await ws.send(json.dumps({"type": "pong", **(
                    {"rid": frame["rid"]} if "rid" in frame else {})}))
                last_frame.append(time.monotonic())

    async with serve(gateway, "127.0.0.1", 0) as srv:
        port = srv.sockets[0].getsockname()[1]
        client = Client(f"http://127.0.0.1:{port}", token="a.b.c", ping_interval=0.6,
                        watchdog_pings=3, backoff_base=5, connect_options={"ping_interval": None})
        async with client:
            await client.wait_connected(10)
            await client.wait_state(State.DISCONNECTED, 10)
            silent = time.monotonic() - last_frame[-1]
            assert client.last_close is not None and client.last_close.reason == "watchdog"
    # 3 x 0.6 s; a tick late it was 2.3 s at least (4 ticks less the round trip)
    assert 1.8 - 0.05 <= silent < 1.8 + 0.4, silent


def _hello(head: int = 0) -> str:
    return json.dumps({"type": "hello", "session": "s", "user": "u", "head": head,
                       "unread": 0, "v": 1, "limits": {"idle_timeout_s": 60}})


async def test_frames_that_came_before_the_close_are_all_handled() -> None:
    """protocol.md: a 4000 or 4102 close follows its queued frames. Once the close had
    arrived, the ack of an event read before it failed, and the frames still to be read
    were dropped: transient events lost for good (1 run in 8 had them all), the
    ``kicked`` frame too (Kicked without its reason and its successor)."""
    from websockets.asyncio.server import serve

    async def gateway(ws: Any) -> None:
        frames = [_hello()]
        for seq in range(1, 4):  # stored events, each acked, and transient ones between
            frames += [json.dumps({"type": "event", "seq": seq, "id": None, "body": seq,
                                   "ts": 0.0}),
                       json.dumps({"type": "event", "seq": None, "id": None,
                                   "body": f"t{seq}", "ts": 0.0})]
        frames.append(json.dumps({"type": "kicked", "reason": "quota", "by": "newer"}))
        for frame in frames:
            await ws.send(frame)
        await ws.close(4102, "kicked")

    async with serve(gateway, "127.0.0.1", 0) as srv:
        port = srv.sockets[0].getsockname()[1]
        client = Client(f"http://127.0.0.1:{port}", token="a.b.c", after=0)
        got = []
        with pytest.raises(Kicked) as info:
            async with asyncio.timeout(10):
                async for event in client:
                    got.append(event.body)
    assert got == [1, "t1", 2, "t2", 3, "t3"]
    assert (info.value.code, info.value.kicked_reason, info.value.by) == (4102, "quota", "newer")


async def test_a_first_frame_that_is_not_a_hello_is_a_reconnect_not_a_silent_stop() -> None:
    """A proxy's HTML error page as the first frame raised out of the connection's task:
    the client stopped with no error and no reconnect. Frames before ``hello`` are
    skipped, as the JS SDK does (an event before it was a 1002 close in a loop); no
    hello within connect_timeout is a reconnect, like any other broken link."""
    from websockets.asyncio.server import serve

    attempts = 0

    async def gateway(ws: Any) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await ws.send("<html>502 Bad Gateway</html>")
            await ws.wait_closed()
            return
        await ws.send(json.dumps({"type": "event", "seq": 1, "id": None, "body": 1,
                                  "ts": 0.0}))  # before hello: skipped
        await ws.send(_hello())
        await ws.wait_closed()

    async with serve(gateway, "127.0.0.1", 0) as srv:
        port = srv.sockets[0].getsockname()[1]
        client = Client(f"http://127.0.0.1:{port}", token="a.b.c", backoff_base=0.05,
                        backoff_cap=0.1, connect_timeout=0.5)
        async with client:
            await client.wait_connected(10)
            assert attempts == 2 and client.connects == 1
            assert client.last_close is not None and client.last_close.reason == "timeout"
