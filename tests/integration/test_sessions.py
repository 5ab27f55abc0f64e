"""Session lifecycle against the real server: open-connection, keepalive, expiry, slow
consumers, metrics."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import jwt

from tests.support.rawws import RawWs
from tests.support.server import ServerProcess, running_server
from tests.support.waiting import wait_for
from tests.support.ws import Client, ws_client, ws_connect


async def test_open_connection_returns_a_working_url(server: ServerProcess) -> None:
    async with server.http() as http:
        r = await http.post("/v1/open-connection", json={
            "user": "olga", "workspace": "w9", "device": "tab", "application": "news"})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["url"].startswith(f"ws://127.0.0.1:{server.port}/v1/ws?token=")
        assert out["token"] in out["url"] and out["expires_at"] > 0
        async with ws_connect(out["url"]) as c:
            assert c.hello["user"] == "olga"
            # the token carries the four dimensions: a filter on them reaches this client
            r = await http.post("/v1/notifications", json={
                "filter": {"workspace": "w9", "device": "tab", "application": "news"},
                "body": "dimensions"})
            assert r.json()["sessions"] == 1
            assert (await c.recv_type("event"))["body"] == "dimensions"
        # Pushca alias: same thing with Pushca field names and response keys
        r = await http.post("/open-connection", json={"client": {
            "workSpaceId": "w9", "accountId": "olga", "deviceId": "tab",
            "applicationId": "news"}})
        assert r.status_code == 200
        assert r.json()["externalAdvertisedUrl"] == \
            f"ws://127.0.0.1:{server.port}/{r.json()['token']}"
        r = await http.post("/v1/open-connection", json={"workspace": "w9"})
        assert r.status_code == 400 and r.json()["error"]["field"] == "user"


async def closed_while_pinging(client: Client) -> tuple[int | None, str]:
    """The server's close of ``client``, which keeps sending ``ping`` meanwhile (never
    idle)."""
    async def keep_pinging() -> None:
        while True:
            await client.send({"type": "ping"})
            await asyncio.sleep(0.3)

    task = asyncio.create_task(keep_pinging())
    try:
        return await client.closed(timeout=10)
    finally:
        task.cancel()


async def test_idle_session_is_closed_and_token_expiry_closes_4101(tmp_path: Path) -> None:
    with running_server(tmp_path, "--idle-timeout-s", "1.5") as srv:
        async with ws_client(srv, "quiet") as quiet:
            code, reason = await quiet.closed(timeout=10)
            assert code == 4002 and "no frame" in reason
        # a client that keeps pinging stays until its token expires
        async with ws_client(srv, "pinger", token=srv.token("pinger", ttl=2)) as pinger:
            code, reason = await closed_while_pinging(pinger)
            assert code == 4101 and "expired" in reason


async def test_a_token_accepted_within_the_leeway_keeps_its_session_for_the_leeway(
        tmp_path: Path) -> None:
    """protocol.md, token expiry: the connect accepts a token up to 5 s past its exp (for
    clocks that differ), and the session keeps that leeway. It was closed 4101 at the
    first tick after its hello: a session doomed as it opened."""
    with running_server(tmp_path, "--idle-timeout-s", "1.5") as srv:  # a tick every 0.375 s
        token = srv.token("late", ttl=-3)
        exp = jwt.decode(token, options={"verify_signature": False})["exp"]
        async with ws_client(srv, "late", token=token) as late:
            assert late.hello["type"] == "hello"
            code, reason = await closed_while_pinging(late)
            assert code == 4101 and "expired" in reason
            assert time.time() >= exp + 5


async def test_slow_consumer_is_closed_and_resumes_from_the_store(tmp_path: Path) -> None:
    with running_server(tmp_path, "--send-queue-size", "8",
                        "--inline-event-max-bytes", "65536") as srv:
        body = {"pad": "x" * 60000}
        n = 300  # ~18 MB: far more than the socket buffers plus 8 queued frames
        async with ws_client(srv, "slow", max_queue=1) as slow, srv.http() as http:
            # the client reads nothing while a burst arrives
            for _ in range(n):
                r = await http.post("/v1/notifications", json={"users": ["slow"], "body": body})
                assert r.status_code == 200
            code, reason = await slow.closed(timeout=30)
            assert code == 4001 and "slow" in reason
        # after reconnecting it fetches from the store: nothing is lost
        async with ws_client(srv, "slow") as again:
            assert again.hello["head"] == n
            got = []
            while len(got) < n:
                reply = await again.request({"type": "fetch",
                                             "after": got[-1] if got else 0, "limit": 500})
                got += [e["seq"] for e in reply["events"]]
            assert got == list(range(1, n + 1))


async def test_a_slow_but_steady_reader_keeps_its_session(tmp_path: Path) -> None:
    """The write deadline (4001) and the keepalive (1011) are for a client that stopped
    reading (docs/protocol.md): one that takes its frames slowly but steadily keeps its
    session however long they take. Here 1.6 MB take 5 s, ten write deadlines; the
    frames wait in the hub's buffer or the kernel's (up to tcp_wmem's 4 MB), the hub's
    ping behind them (on the old code: 1011 "keepalive ping timeout")."""
    deadline_s = 0.5
    with running_server(tmp_path, "--write-deadline-s", str(deadline_s),
                        "--ping-interval-s", "1", "--ping-timeout-s", "1",
                        "--max-body-bytes", "400000",
                        "--inline-event-max-bytes", "400000") as srv:
        ws = await RawWs.connect(srv.port, f"/v1/ws?token={srv.token('steady')}",
                                 rcvbuf=16384)
        try:
            assert (await ws.recv_json())["type"] == "hello"
            ws.pause_reading()
            n = 4  # 400 KB each: 1.25 s per frame at the pace below, 2.5 deadlines
            async with srv.http() as http:
                for i in range(n):
                    r = await http.post("/v1/notifications", json={
                        "users": ["steady"], "body": {"i": i, "pad": "x" * 399_000}})
                    assert r.status_code == 200, r.text

            def events() -> list[int]:
                return [f.json()["seq"] for f in ws.frames
                        if f.opcode == 1 and f.json()["type"] == "event"]

            loop = asyncio.get_running_loop()
            started, first = loop.time(), ws.received
            while len(events()) < n:  # small reads at 320 KB/s on average: 1.6 MB take 5 s
                assert ws.close_frame is None, ws.close_frame.close
                target = ws.received + 16384
                ws.resume_reading()
                await ws.wait_until(lambda t=target: ws.received >= t or ws.ended, 10, "data")
                ws.pause_reading()
                await asyncio.sleep(max(0.0, started + (ws.received - first) / 320_000
                                        - loop.time()))
                assert loop.time() - started < 60, "too slow"
            took = loop.time() - started
            assert events() == list(range(1, n + 1))
            # the premise: the client took many deadlines and ping timeouts to read them
            assert took > 2 * n * deadline_s, took
            ws.resume_reading()
            ws.send_json({"type": "ping", "rid": 1})
            pong = await ws.recv_until(lambda m: m["type"] == "pong")
            assert pong["rid"] == 1 and ws.close_frame is None
        finally:  # gone before the server stops (it would wait close_grace_s for it)
            ws.abort()
            await ws.wait_ended()


async def test_metrics_count_sessions_sends_and_deliveries(server: ServerProcess) -> None:
    async with ws_client(server, "m1") as m1, server.http() as http:
        await http.post("/v1/notifications", json={"users": ["m1"], "body": 1})
        await m1.recv_type("event")
        text = (await http.get("/metrics")).text
        assert "pushgate_sessions 1.0" in text
        assert 'pushgate_sends_total{kind="stored"} 1.0' in text
        assert "pushgate_deliveries_total 1.0" in text
        assert "pushgate_delivery_latency_seconds_count 1.0" in text
        for _ in range(2):  # accepted duplicates count as stored sends (operations.md)
            r = await http.post("/v1/notifications",
                                json={"users": ["m1", "m2"], "body": 2, "id": "m-dup"})
            assert r.status_code == 200
        await m1.recv_type("event")
        after = (await http.get("/metrics")).text
        assert 'pushgate_sends_total{kind="stored"} 5.0' in after
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).json()["status"] == "ready"
        spec = (await http.get("/openapi.json")).json()
        assert spec["openapi"].startswith("3.")


async def test_a_close_code_the_client_chose_is_counted_as_the_clients(
        tmp_path: Path) -> None:
    """operations.md: ``pushgate_disconnects_total`` by code. A client closing with 4001
    was counted as the server's slow-consumer close (its alert), and every code a client
    picked made a new series."""
    with running_server(tmp_path) as srv:
        for code in (4001, 4102, 3456, 1000):
            async with ws_client(srv, "cc") as c:
                await c.ws.close(code=code, reason="client chose it")
        async with srv.http() as http:
            async def disconnects() -> dict[str, float]:
                text = (await http.get("/metrics")).text
                return {line.split('"')[1]: float(line.rsplit(" ", 1)[1])
                        for line in text.splitlines()
                        if line.startswith("pushgate_disconnects_total{")}

            got = await wait_for(disconnects, 10, "the four closes counted",
                                 until=lambda d: sum(d.values()) == 4)
        assert got == {"client": 3.0, "1000": 1.0}


async def test_tokens_stay_out_of_the_logs(tmp_path: Path) -> None:
    with running_server(tmp_path, PUSHGATE_LOG_LEVEL="info") as srv:
        token = srv.token("logged")
        async with ws_client(srv, "logged", token=token) as c:
            await c.send({"type": "ping", "rid": 1})
            await c.recv_type("pong")
        srv.stop()
        log = srv.log_text()
        assert "WebSocket /v1/ws?token=***" in log
        assert token not in log


async def test_retried_ack_send_redelivers_the_stored_event(server: ServerProcess) -> None:
    async with ws_client(server, "rita") as rita, server.http() as http:
        send = {"users": ["rita"], "body": {"v": 1}, "id": "once", "ack": True,
                "ack_timeout_ms": 300}
        r = await http.post("/v1/notifications", json=send)
        assert r.status_code == 408
        first = await rita.recv_type("event")

        async def ack_next() -> dict:
            ev = await rita.recv_type("event")
            await rita.send({"type": "ack", "seq": ev["seq"]})
            return ev

        acker = asyncio.create_task(ack_next())
        # the retry carries another body by mistake: the stored event wins
        r = await http.post("/v1/notifications", json={**send, "body": {"v": 2},
                                                        "ack_timeout_ms": 5000})
        again = await acker
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["duplicate"] is True
        assert again == first
