"""End-to-end: the real ``pushgate serve`` process, real websocket and HTTP clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from tests.support.server import ServerProcess, running_server
from tests.support.ws import ws_client


async def send(srv: ServerProcess, users: list[str], body: object, **extra: object) -> dict:
    async with srv.http() as http:
        r = await http.post("/v1/notifications", json={"users": users, "body": body, **extra})
        assert r.status_code == 200, r.text
        return r.json()


async def test_send_receive_restart_and_resume(tmp_path: Path) -> None:
    srv = running_server(tmp_path)
    with srv as s:
        async with ws_client(s, "alice") as alice:
            assert alice.hello["head"] == 0
            out = await send(s, ["alice"], {"n": 1})
            assert out["results"] == [{"user": "alice", "seq": 1, "sessions": 1}]
            await send(s, ["alice"], {"n": 2})
            got = [await alice.recv_type("event") for _ in range(2)]
            assert [(e["seq"], e["body"]) for e in got] == [(1, {"n": 1}), (2, {"n": 2})]
            await alice.send({"type": "ack", "seq": 2})
        last_seen = 2
        # sent while alice is away, before the restart
        await send(s, ["alice"], {"n": 3})
        # a second client stays connected through the restart and sees the SHUTDOWN code
        async with ws_client(s, "bob") as bob:
            s.stop()
            code, reason = await bob.closed()
            assert code == 4000, (code, reason)
        s.start()  # same data dir: the SQLite inbox survives
        for n in (4, 5, 6):
            await send(s, ["alice"], {"n": n})
        async with ws_client(s, "alice", after=last_seen) as alice:
            assert alice.hello["head"] == 6
            backlog = [await alice.recv_type("event") for _ in range(4)]
            assert [e["seq"] for e in backlog] == [3, 4, 5, 6]
            assert [e["body"]["n"] for e in backlog] == [3, 4, 5, 6]
            await send(s, ["alice"], {"n": 7})
            live = await alice.recv_type("event")
            assert (live["seq"], live["body"]) == (7, {"n": 7})
            # nothing else (no duplicate of the backlog) is pending
            await alice.send({"type": "ping", "rid": "after-backlog"})
            assert await alice.recv() == {"type": "pong", "rid": "after-backlog"}
        async with s.http() as http:
            r = await http.get("/v1/users/alice/events", params={"after": 0, "limit": 100})
            assert [e["seq"] for e in r.json()["events"]] == [1, 2, 3, 4, 5, 6, 7]


async def test_sixth_session_kicks_the_oldest(server: ServerProcess) -> None:
    async with contextlib.AsyncExitStack() as stack:
        bob = await stack.enter_async_context(ws_client(server, "bob"))
        first = await stack.enter_async_context(ws_client(server, "alice"))
        others = [await stack.enter_async_context(ws_client(server, "alice")) for _ in range(4)]
        async with server.http() as http:
            r = await http.get("/v1/users/alice/sessions")
            assert len(r.json()["sessions"]) == 5
        async with ws_client(server, "alice") as sixth:
            kicked = await first.recv_type("kicked")
            assert kicked["reason"] == "quota" and kicked["by"] == sixth.hello["session"]
            code, _ = await first.closed()
            assert code == 4102
            async with server.http() as http:
                r = await http.get("/v1/users/alice/sessions")
                ids = {x["session"] for x in r.json()["sessions"]}
                assert len(ids) == 5 and first.hello["session"] not in ids
            # bob is unaffected and still receives
            await send(server, ["bob"], {"hi": "bob"})
            assert (await bob.recv_type("event"))["body"] == {"hi": "bob"}
            # the remaining alice sessions all receive
            await send(server, ["alice"], {"hi": "alice"})
            for c in [*others, sixth]:
                assert (await c.recv_type("event"))["body"] == {"hi": "alice"}


async def test_send_with_acknowledge(server: ServerProcess) -> None:
    async with ws_client(server, "carol", dev="phone") as carol, server.http() as http:
        async def ack_next() -> None:
            ev = await carol.recv_type("event")
            await carol.send({"type": "ack", "seq": ev["seq"]})

        acker = asyncio.create_task(ack_next())
        r = await http.post("/v1/notifications", json={
            "users": ["carol"], "body": {"x": 1}, "ack": True, "ack_timeout_ms": 5000})
        await acker
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["acked_by"] == carol.hello["session"]

        # the client receives but does not ack: 408, and the event stays stored
        r = await http.post("/v1/notifications", json={
            "users": ["carol"], "body": {"x": 2}, "ack": True, "ack_timeout_ms": 300})
        assert r.status_code == 408, r.text
        err = r.json()
        assert err["error"]["code"] == "ack_timeout" and err["error"]["retryable"] is True
        seq = err["results"][0]["seq"]
        assert (await carol.recv_type("event"))["seq"] == seq
        events = (await http.get("/v1/users/carol/events")).json()["events"]
        assert [e["body"] for e in events] == [{"x": 1}, {"x": 2}]

        # a websocket send: its error frame carries the same fields as the 408's body
        async with ws_client(server, "dave") as dave:
            await dave.send({"type": "send", "rid": "a1", "users": ["carol"], "body": 3,
                             "ack": True, "ack_timeout_ms": 300})
            frame = await dave.recv_type("error")
            assert frame["code"] == "ack_timeout" and frame["rid"] == "a1", frame
            assert frame["sessions"] == 1 and frame["report"], frame
            assert frame["results"][0]["user"] == "carol"
            assert (await carol.recv_type("event"))["seq"] == frame["results"][0]["seq"]

        # Pushca alias: acknowledge addressed to a device
        acker = asyncio.create_task(ack_next())
        r = await http.post("/send-notification-with-acknowledge", json={
            "id": "m-1", "client": {"workSpaceId": "default", "accountId": "carol",
                                    "deviceId": "phone", "applicationId": None},
            "message": "hello"})
        await acker
        assert r.status_code == 200, r.text


async def test_idempotent_send_and_transient_filters(server: ServerProcess) -> None:
    async with ws_client(server, "dave", app="chat", ws="w1") as dave, \
            ws_client(server, "erin", app="chat", ws="w1") as erin, \
            ws_client(server, "frank", app="mail", ws="w1") as frank, server.http() as http:
        first = await send(server, ["dave", "erin"], {"a": 1}, id="campaign-1")
        again = await send(server, ["dave", "erin"], {"a": 1}, id="campaign-1")
        assert [r["seq"] for r in first["results"]] == [r["seq"] for r in again["results"]]
        assert all(r.get("duplicate") for r in again["results"])
        assert (await dave.recv_type("event"))["seq"] == 1
        # filter: every 'chat' client of workspace w1 except erin; transient (no seq)
        r = await http.post("/v1/notifications", json={
            "filter": {"workspace": "w1", "application": "chat",
                       "exclude": [{"account": "erin"}]}, "body": "to chat"})
        assert r.status_code == 200 and r.json()["sessions"] == 1
        ev = await dave.recv_type("event")
        assert ev["seq"] is None and ev["body"] == "to chat"
        # Pushca alias with findAny: exactly one of the matching clients gets each message
        for i in range(2):
            r = await http.post("/send-notification", json={
                "filter": {"workSpaceId": "w1", "applicationId": "chat", "findAny": True},
                "message": f"any-{i}"})
            assert r.json()["sessions"] == 1
        got = []
        for c in (dave, erin):
            while True:
                f = await c.recv_type("event")
                if str(f["body"]).startswith("any-"):
                    got.append(f["body"])
                    break
        assert sorted(got) == ["any-0", "any-1"]
        # the mail client got none of it
        await frank.send({"type": "ping", "rid": "p"})
        assert (await frank.recv())["type"] == "pong"


async def test_client_send_body_limit_is_the_senders_body_as_over_http(tmp_path: Path) -> None:
    """``max_body_bytes`` limits the body the client sent, as over HTTP; the ``from``
    wrapper's bytes (ids of up to 255 characters each) come on top."""
    sender, device = "s" * 255, "d" * 255
    limit = 65536  # max_body_bytes, default
    with running_server(tmp_path, "--max-frame-bytes", "200000") as server:
        async with ws_client(server, sender, dev=device) as s:
            body = "x" * (limit - 2)  # exactly the limit as JSON
            reply = await s.request({"type": "send", "users": ["ian"], "body": body})
            assert reply["type"] == "reply", reply
            over = await s.request({"type": "send", "users": ["ian"], "body": body + "x"})
            assert (over["type"], over["code"], over["field"]) == \
                ("error", "payload_too_large", "body")
            assert over["message"] == f"'body' is {limit + 1} bytes; the limit is {limit}"
        async with server.http() as http:
            events = (await http.get("/v1/users/ian/events")).json()["events"]
            assert len(events) == 1 and events[0]["body"]["body"] == body
            assert events[0]["body"]["from"]["user"] == sender


async def test_client_to_client_send_and_read_state(server: ServerProcess) -> None:
    async with ws_client(server, "gina", dev="d1") as gina, ws_client(server, "hal") as hal:
        reply = await gina.request({"type": "send", "users": ["hal"], "body": {"text": "yo"}})
        assert reply["type"] == "reply" and reply["results"][0]["seq"] == 1
        ev = await hal.recv_type("event")
        assert ev["body"] == {"from": {"user": "gina", "workspace": "default", "device": "d1",
                                       "application": ""}, "body": {"text": "yo"}}
        for i in range(3):
            await gina.request({"type": "send", "users": ["hal"], "body": i})
        fetched = await hal.request({"type": "fetch", "after": 1, "limit": 2})
        assert [e["seq"] for e in fetched["events"]] == [2, 3] and fetched["more"] is True
        r = await hal.request({"type": "read", "seqs": [1], "ranges": [[3, 4]]})
        assert (r["head"], r["unread"], r["live"]) == (4, 1, 4)
        st = await hal.request({"type": "read_state"})
        assert st["read"] == [[1, 1], [3, 4]] and st["unread"] == 1


async def test_a_client_send_may_not_carry_raw_provider_overrides(server: ServerProcess) -> None:
    """``push.apns`` / ``android`` / ``webpush`` are the business server's: from a client
    an ``apns-topic`` of another app made APNs refuse the recipient's token as not for
    the topic, and the bridge removed it as dead. Refused 403 naming the field; nothing
    is stored."""
    async with ws_client(server, "ivo") as ivo:
        for name, override in (("apns", {"headers": {"apns-topic": "com.other.app"}}),
                               ("android", {"priority": "HIGH"}),
                               ("webpush", {"headers": {"TTL": "0"}})):
            error = await ivo.request({"type": "send", "users": ["jan"], "body": 1,
                                       "push": {"title": "t", name: override}})
            assert (error["type"], error["code"], error["field"]) == (
                "error", "forbidden", f"push.{name}"), error
    async with server.http() as http:
        r = await http.get("/v1/users/jan/events")
        assert r.status_code == 404, r.text  # jan has no inbox: nothing was stored


async def test_a_client_send_id_is_the_senders_own(server: ServerProcess) -> None:
    """A client's send ``id`` is an idempotency key scoped to its sender: a client that
    sends first with the id the business server will use for a recipient does not make
    the server's send a duplicate (it did: the server's notification was never stored),
    nor does another client's send with the same id; the sender's own retry is one event.
    Recipients see the id as given (live, fetched, over HTTP); the
    server's report under that id counts only the server's send."""
    async with ws_client(server, "mal", dev="d1") as mal, ws_client(server, "nia") as nia, \
            ws_client(server, "kim") as kim:
        first = await mal.request({"type": "send", "users": ["kim"], "body": "fake",
                                   "id": "order-42"})
        again = await mal.request({"type": "send", "users": ["kim"], "body": "fake",
                                   "id": "order-42"})
        assert first["results"][0]["seq"] == again["results"][0]["seq"] == 1
        assert again["results"][0].get("duplicate") is True, again
        other = await nia.request({"type": "send", "users": ["kim"], "body": "hi",
                                   "id": "order-42"})
        assert other["results"][0]["seq"] == 2 and not other["results"][0].get("duplicate")
        assert first["report"] != "order-42" and first["report"] != other["report"]
        async with server.http() as http:
            r = await http.post("/v1/notifications", json={"users": ["kim"], "body": "real",
                                                           "id": "order-42"})
            assert r.status_code == 200, r.text
            assert r.json()["results"][0] == {"user": "kim", "seq": 3, "sessions": 1}, r.text
            got = [await kim.recv_type("event") for _ in range(3)]
            assert [(e["seq"], e["id"]) for e in got] == [(1, "order-42"), (2, "order-42"),
                                                        (3, "order-42")]
            assert got[2]["body"] == "real" and got[0]["body"]["from"]["user"] == "mal"
            r = await http.get("/v1/users/kim/events")
            assert [e["id"] for e in r.json()["events"]] == ["order-42"] * 3
            report = (await http.get("/v1/notifications/order-42")).json()
            assert (report["addressed"], report["stored"], report["duplicates"]) == (1, 1, 0)
            fetched = await kim.request({"type": "fetch", "after": 0})
            assert [e["id"] for e in fetched["events"]] == ["order-42"] * 3
        # the scoped key takes 18 of the store's 255 characters
        error = await mal.request({"type": "send", "users": ["kim"], "body": 1,
                                   "id": "x" * 238})
        assert (error["type"], error["code"], error["field"]) == (
            "error", "invalid_request", "id"), error
        assert "237" in error["message"]
        ok = await mal.request({"type": "send", "users": ["kim"], "body": 1, "id": "x" * 237})
        assert ok["type"] == "reply" and (await kim.recv_type("event"))["id"] == "x" * 237


async def test_a_websocket_send_runs_to_its_end_when_its_connection_closes(
        server: ServerProcess) -> None:
    """A client that writes ``send`` frames and closes at once gets no replies, but the
    sends are stored — as over HTTP and in the cluster (they were dropped here)."""
    from tests.support.waiting import wait_for

    async with ws_client(server, "ida") as ida:
        for i in range(5):
            await ida.send({"type": "send", "users": ["ivo"], "body": i, "rid": i})
        await ida.ws.close()

    async def stored() -> list[object]:
        async with server.http() as http:
            r = await http.get("/v1/users/ivo/events")
        return [e["body"]["body"] for e in r.json()["events"]] if r.status_code == 200 else []

    assert await wait_for(stored, 10, "the 5 sends stored",
                          until=lambda bodies: len(bodies) == 5) == list(range(5))


async def test_a_flood_of_waiting_sends_stops_the_reading_of_its_socket(
        server: ServerProcess) -> None:
    """docs/protocol.md, flow control: with 32 sends waiting (each for its ack here), the
    sender's socket is not read further until some are answered: its ping is answered
    only after a send was."""
    sends = 40
    async with ws_client(server, "flooder") as s, ws_client(server, "acker") as r:
        for i in range(sends):
            await s.send({"type": "send", "rid": i, "users": ["acker"], "body": i, "ack": True,
                          "ack_timeout_ms": 30000})
        seqs = [(await r.recv_type("event"))["seq"] for _ in range(32)]  # 32 sends read
        await s.send({"type": "ping", "rid": "after"})
        for seq in seqs:  # answers the sends, one by one
            await r.send({"type": "ack", "seq": seq})
        replies = 0
        while (frame := await s.recv())["type"] != "pong":
            assert frame["type"] == "reply", frame
            replies += 1
        assert replies >= 1  # the ping was read once fewer than 32 sends waited
        for _ in range(sends - 32):  # the rest were read too: ack them as they come
            await r.send({"type": "ack", "seq": (await r.recv_type("event"))["seq"]})
        while replies < sends:
            assert (await s.recv())["type"] == "reply"
            replies += 1


async def test_connect_backlog_with_the_default_limits_is_fetch_max_limit(
        server: ServerProcess) -> None:
    """protocol.md: the backlog carries up to ``limits.fetch_max_limit`` events (and half
    of ``send_queue_size``; with the defaults, the former), then live frames."""
    stored = 1200
    async with server.http() as http:
        sem = asyncio.Semaphore(16)

        async def one(n: int) -> None:
            async with sem:
                r = await http.post("/v1/notifications",
                                    json={"users": ["backlog"], "body": {"n": n}})
                assert r.status_code == 200, r.text

        await asyncio.gather(*(one(n) for n in range(stored)))
    async with ws_client(server, "backlog", after=0, max_queue=None) as c:
        limit = c.hello["limits"]["fetch_max_limit"]
        assert c.hello["head"] == stored and limit == 1000
        await c.send({"type": "ping", "rid": "end"})
        seqs = []
        while (frame := await c.recv())["type"] != "pong":
            assert frame["type"] == "event", frame
            seqs.append(frame["seq"])
        assert seqs == list(range(1, limit + 1))


async def test_a_ping_and_a_refused_request_are_answered_after_the_requests_before_them(
        server: ServerProcess) -> None:
    """protocol.md: requests are answered in the order they were sent — a ``ping`` (a
    client's way to know its earlier requests are done) and a request refused as it was
    parsed too (they were answered at once, ahead of replies still being served)."""
    for i in range(50):
        await send(server, ["ivy"], {"n": i, "pad": "x" * 500})
    async with ws_client(server, "ivy") as ivy:
        frames = [{"type": "fetch", "after": 0, "limit": 50, "rid": f"f{i}"} for i in range(20)]
        frames += [{"type": "ping", "rid": "p1"},
                   {"type": "fetch", "after": 0, "limit": 0, "rid": "bad"},  # limit 0
                   {"type": "read_state", "rid": "s1"},
                   {"type": "ping", "rid": "p2"}]
        for frame in frames:
            await ivy.send(frame)
        answers = []
        while len(answers) < len(frames):
            m = await ivy.recv()
            if m["type"] in ("reply", "pong", "error"):
                answers.append((m["type"], m["rid"]))
    assert answers == [("reply", f"f{i}") for i in range(20)] + [
        ("pong", "p1"), ("error", "bad"), ("reply", "s1"), ("pong", "p2")]



@pytest.mark.parametrize("lost", ["pushgate.db", "pushgate.db-wal"])
async def test_a_database_file_deleted_under_the_gateway_gets_503_not_a_200_it_would_lose(
        tmp_path: Path, lost: str) -> None:
    """``pushgate.db`` (or its WAL) deleted while the gateway runs: SQLite would go on
    committing into the unlinked file, answering 200 for sends no restart finds. The
    appender checks the files around each commit: such a send is 503
    ``store_unavailable`` naming the file, and the log says to restart."""
    with running_server(tmp_path) as srv:
        async with srv.http() as http:
            r = await http.post("/v1/notifications", json={"users": ["del"], "body": 1})
            assert r.status_code == 200, r.text
            (srv.data_dir / lost).unlink()
            r = await http.post("/v1/notifications", json={"users": ["del"], "body": 2})
            assert r.status_code == 503, r.text
            error = r.json()["error"]
            assert error["code"] == "store_unavailable"
            assert f"{lost} was deleted while the store had it open" in error["message"]
            # every later write is refused too: the retry found the refused send's event
            # in the lost file (200 duplicate), read marks and devices went there with 200
            retry = await http.post("/v1/notifications",
                                    json={"users": ["del"], "body": 2, "id": "again"})
            again = await http.post("/v1/notifications",
                                    json={"users": ["del"], "body": 2, "id": "again"})
            read = await http.post("/v1/users/del/read", json={"seqs": [1]})
            device = await http.put("/v1/users/del/devices",
                                    json={"platform": "fcm", "token": "t" * 32, "app": "a"})
            for r in (retry, again, read, device):
                assert r.status_code == 503, (r.request.url, r.text)
                assert "was deleted while the store had it open" in \
                    r.json()["error"]["message"], r.text
        assert "refusing writes" in srv.log_text()


async def test_client_sends_over_the_users_rate_are_refused_and_others_go_on(
        tmp_path: Path) -> None:
    """configuration.md, ``client_send_rate_per_user``: a user's sends over the rate (a
    burst of twice it) are answered ``rate_limited`` (retryable, nothing sent), on the
    native and the Pushca path alike; another user's sends are not held."""
    from tests.support.pushca import client_obj, pushca_client

    with running_server(tmp_path, PUSHGATE_CLIENT_SEND_RATE_PER_USER="2") as srv:
        async with ws_client(srv, "rapid") as rapid, ws_client(srv, "calm") as calm, \
                ws_client(srv, "dest") as dest:
            answers = [await rapid.request({"type": "send", "users": ["dest"], "body": i})
                       for i in range(5)]  # a burst of 4 within the first second
            assert [a["type"] for a in answers[:4]] == ["reply"] * 4, answers
            refused = answers[4]
            assert (refused["type"], refused["code"], refused["field"], refused["retryable"]) \
                == ("error", "rate_limited", "type", True), refused
            assert "client_send_rate_per_user" in refused["message"]
            got = [(await dest.recv_type("event"))["body"]["body"] for _ in range(4)]
            assert got == [0, 1, 2, 3]
            reply = await calm.request({"type": "send", "users": ["dest"], "body": "calm"})
            assert reply["type"] == "reply"
            assert (await dest.recv_type("event"))["body"]["body"] == "calm"  # not rapid's 5th
        async with pushca_client(srv, client_obj("pushy")) as pushy:
            answers = [await pushy.command("SEND_MESSAGE", {
                "filter": {"accountId": "nobody"}, "message": str(i)}) for i in range(5)]
            assert answers[:4] == [None] * 4
            assert answers[4] is not None
            error = json.loads(answers[4])["error"]
            assert (error["code"], error["field"]) == ("rate_limited", "command")
