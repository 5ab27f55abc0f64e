"""Pushca's own clients against pushgate, written from Pushca's document
(shared/reference, "Pushca claster: establish client connection" and the following
sections) and its published browser client — not pushgate's SDKs:

- the wscat flow: ``curl … /open-connection | jq -r .externalAdvertisedUrl`` then npm's
  ``wscat -c`` (clients/js devDependency), reading what wscat prints;
- a websocket client that splits messages on ``@@`` and answers ACKNOWLEDGE, sending
  commands in the document's JSON form and the browser client's ``uuid@@COMMAND@@json``
  form (the Chromium page is in tests/sdk/test_pushca_browser.py);
- ``/send-notification-with-acknowledge``: 200 after the ACKNOWLEDGE, 408 without;
  ``/send-notification`` filters with ``findAny`` and ``exclude``;
- the keyless ``/open-connection`` (``pushca_public_open_connection``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.pushca import (
    TIMEOUT,
    client_obj,
    open_connection,
    pushca,
    pushca_client,
    wait_sessions,
)
from tests.support.server import ServerProcess, running_server
from tests.support.waiting import wait_for
from tests.support.ws import ws_client

ROOT = Path(__file__).resolve().parents[2]
WSCAT = ROOT / "clients" / "js" / "node_modules" / ".bin" / "wscat"


# -- open-connection --------------------------------------------------------------------------


async def test_open_connection_advertises_pushca_connection_strings(
        server: ServerProcess) -> None:
    reply = await open_connection(server, client_obj("client1@test.ee"))
    jwt = reply["token"]
    want = f"ws://127.0.0.1:{server.port}/{jwt}"
    assert reply["externalAdvertisedUrl"] == want
    assert reply["internalAdvertisedUrl"] == want
    assert reply["browserAdvertisedUrl"] == want
    assert reply["pusherInstanceId"].startswith("hub-")
    assert reply["url"] == f"ws://127.0.0.1:{server.port}/v1/ws?token={jwt}"  # native kept
    # behind a proxy (trusted_proxies): X-Forwarded-Proto and Host make the URL
    async with httpx.AsyncClient(base_url=server.base_url, timeout=TIMEOUT) as http:
        r = await http.post("/open-connection", json={"client": client_obj("a")}, headers={
            "Authorization": f"Bearer {server.api_key}", "Host": "push.example.com"})
    assert r.json()["browserAdvertisedUrl"] == f"ws://push.example.com/{r.json()['token']}"
    # the JWT in the path is not written to the server's log
    async with pushca(want):
        pass
    assert jwt not in server.log_text()


async def test_an_http_public_url_advertises_websocket_urls(tmp_path: Path) -> None:
    """``public_url`` may be given as the gateway's http(s):// address: the connection
    strings are ws(s):// of the same host and path (an https:// one was advertised as
    is, which websocket clients refuse)."""
    for given, want in (("https://push.example.com/edge/", "wss://push.example.com/edge"),
                        ("http://10.0.0.5:8080", "ws://10.0.0.5:8080")):
        with running_server(tmp_path / want.split(":")[0], PUSHGATE_PUBLIC_URL=given) as srv:
            reply = await open_connection(srv, client_obj("abroad"))
        jwt = reply["token"]
        assert reply["externalAdvertisedUrl"] == f"{want}/{jwt}"
        assert reply["browserAdvertisedUrl"] == f"{want}/{jwt}"
        assert reply["url"] == f"{want}/v1/ws?token={jwt}"


async def test_pushca_sessions_are_kept_by_their_pongs(tmp_path: Path) -> None:
    """Pushca clients send nothing of their own: answering the server's pings keeps
    their session, where a native one that sends nothing is closed idle (4002)."""
    with running_server(tmp_path, PUSHGATE_IDLE_TIMEOUT_S="1.5",
                        PUSHGATE_PING_INTERVAL_S="0.3", PUSHGATE_PING_TIMEOUT_S="1") as srv:
        async with pushca_client(srv, client_obj("quiet-pushca")) as quiet, \
                ws_client(srv, "quiet-native") as native:
            code, _ = await native.closed()
            assert code == 4002
            # the Pushca session, idle since before the native one connected, is open
            assert await quiet.command("PING", None) is None
            assert quiet.ws.close_code is None


async def test_pushca_sessions_outlive_their_connection_string(tmp_path: Path) -> None:
    """The connection string's token opens the connection; Pushca's clients cannot renew
    it and get no backlog when they reconnect, so an open Pushca session is not closed
    when it expires (it was, with 4101, every token_ttl_s: messages sent meanwhile were
    lost). A native session of the same token is (4101: it refreshes and resumes)."""
    with running_server(tmp_path, PUSHGATE_TOKEN_TTL_S="2", PUSHGATE_PING_INTERVAL_S="0.5") as srv:
        who = client_obj("long-lived@test.ee")
        async with pushca_client(srv, who) as old:
            for _ in range(2):  # the second opened after the first closed: the expiry
                native = await open_connection(srv, who)  # checks have passed over all
                async with connect(native["url"], open_timeout=TIMEOUT) as ws:
                    with pytest.raises(ConnectionClosed) as closed:
                        while True:
                            await asyncio.wait_for(ws.recv(), 10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4101
            assert time.time() > native["expires_at"]  # (both tokens have expired now)
            assert await old.command("PING", None) is None
            assert old.ws.close_code is None
            async with srv.http() as http:
                r = await http.post("/send-notification", json={
                    "filter": {"accountId": "long-lived@test.ee"}, "message": "still here"})
                assert r.json()["sessions"] == 1, r.text
            assert await old.message() == (None, "still here")


async def test_connection_string_errors(server: ServerProcess) -> None:
    # a path that is not a JWT: 404 naming both endpoints
    with pytest.raises(Exception) as info:
        async with connect(f"ws://127.0.0.1:{server.port}/not-a-jwt", open_timeout=TIMEOUT):
            pass
    assert "404" in str(info.value)
    # a JWT with a bad signature: accepted as websocket, closed 4100 naming the token
    bad = server.token("x")[:-4] + "AAAA"
    async with connect(f"ws://127.0.0.1:{server.port}/{bad}", open_timeout=TIMEOUT) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert ws.close_code == 4100 and "signature" in (ws.close_reason or "")
    # an expired one: 4101
    old = server.token("x", ttl=-60)
    async with connect(f"ws://127.0.0.1:{server.port}/{old}", open_timeout=TIMEOUT) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert ws.close_code == 4101


# -- the wscat flow ----------------------------------------------------------------------------


WSCAT_SCRIPT = r"""
set -eu
REQUEST_BODY=$(jq -n --arg workSpaceId "$WORKSPACE_ID" --arg accountId "$ACCOUNT_ID" \
  --arg deviceId "$DEVICE_ID" --arg applicationId "$APPLICATION_ID" \
  '{client:{workSpaceId: $workSpaceId, accountId: $accountId, deviceId: $deviceId, applicationId: $applicationId}}')
wsurl=$(curl -s "$PUSHGATE/open-connection" -H 'Content-Type: application/json' \
  ${PUSHGATE_API_KEY:+-H "Authorization: Bearer $PUSHGATE_API_KEY"} -d "$REQUEST_BODY" \
  | jq -r '.externalAdvertisedUrl')
echo "URL $wsurl"
exec "$WSCAT" -c "$wsurl"
"""


class Wscat:
    """The wscat script as a subprocess: its stdout lines, its stdin for commands. (With
    stdout not a terminal, wscat prints each message received as a line of its own and
    nothing else; errors go to stderr, merged here.)"""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def line(self, predicate: Any, timeout: float = TIMEOUT) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    raise AssertionError("wscat exited: " + "\n".join(self.lines))
                text = raw.decode().rstrip("\n")
                while text.startswith("> "):  # readline's prompt, for each typed line
                    text = text[2:]
                self.lines.append(text)
                if predicate(text):
                    return text

    async def type(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        await self.proc.stdin.drain()


@contextlib.asynccontextmanager
async def wscat(srv: ServerProcess, account: str, *, key: bool = True
                ) -> AsyncIterator[Wscat]:
    """The document's script (``key``: with the API key header added; without it, the
    script exactly as Pushca publishes it, for the keyless mode)."""
    for tool in ("curl", "jq", "bash"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: apt-get install {tool} (./scripts/test does)")
    if not WSCAT.exists():
        pytest.fail("wscat is missing: (cd clients/js && npm ci) (./scripts/test does)")
    env = {**os.environ, "PUSHGATE": srv.base_url,
           "PUSHGATE_API_KEY": srv.api_key if key else "",
           "WSCAT": str(WSCAT), "WORKSPACE_ID": "workSpaceMain", "ACCOUNT_ID": account,
           "DEVICE_ID": "311aae05-bade-48bf-b390-47a93a66c89e",
           "APPLICATION_ID": "MY_APPLICATION", "NO_COLOR": "1"}
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", WSCAT_SCRIPT, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        start_new_session=True)
    w = Wscat(proc)
    try:
        url = await w.line(lambda t: t.startswith("URL "))
        assert url.startswith(f"URL ws://127.0.0.1:{srv.port}/eyJ"), url
        await wait_sessions(srv, account)  # wscat is connected
        yield w
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), TIMEOUT)


async def test_wscat_receives_send_notification_and_acknowledges(
        server: ServerProcess) -> None:
    account = "client1@test.ee"
    async with wscat(server, account) as w, server.http() as http:
        r = await http.post("/send-notification", json={
            "filter": {"workSpaceId": "workSpaceMain", "accountId": account, "deviceId": None,
                       "applicationId": "MY_APPLICATION", "findAny": False, "exclude": None},
            "message": "Hello dear users!"})
        assert r.status_code == 200 and r.json()["sessions"] == 1, r.text
        assert await w.line(lambda t: "Hello" in t) == "Hello dear users!"
        # with acknowledge: the message comes as <id>@@<body>; the user types the
        # document's ACKNOWLEDGE command and the sender gets 200
        send = asyncio.create_task(http.post("/send-notification-with-acknowledge", json={
            "id": "018a842a-7e52-7692-a344-0d76460e1f3f-0",
            "client": client_obj(account, "311aae05-bade-48bf-b390-47a93a66c89e"),
            "message": "WithAcknowledgeTest1"}))
        got = await w.line(lambda t: "WithAcknowledgeTest1" in t)
        assert got == "018a842a-7e52-7692-a344-0d76460e1f3f-0@@WithAcknowledgeTest1"
        await w.type(json.dumps({"command": "ACKNOWLEDGE", "metaData": {
            "messageId": "018a842a-7e52-7692-a344-0d76460e1f3f-0"}}))
        r = await asyncio.wait_for(send, TIMEOUT)
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["acked_by"]
        # a command pushgate does not know: the error body, naming the field
        await w.type(json.dumps({"command": "SUBSCRIBE", "metaData": {}}))
        err = await w.line(lambda t: t.startswith("{"))
        assert json.loads(err)["error"]["field"] == "command", w.lines


async def test_wscat_script_unchanged_against_the_keyless_mode(tmp_path: Path) -> None:
    """Pushca's script as published (no credential) works once the keyless
    open-connection is on for its workspace and application."""
    with running_server(tmp_path, PUSHGATE_PUSHCA_PUBLIC_OPEN_CONNECTION="true",
                        PUSHGATE_PUSHCA_PUBLIC_WORKSPACES="workSpaceMain",
                        PUSHGATE_PUSHCA_PUBLIC_APPLICATIONS="MY_APPLICATION") as srv:
        async with wscat(srv, "client1@test.ee", key=False) as w, srv.http() as http:
            r = await http.post("/send-notification", json={
                "filter": {"workSpaceId": "workSpaceMain", "accountId": "client1@test.ee"},
                "message": "Hello dear users!"})
            assert r.status_code == 200 and r.json()["sessions"] == 1, r.text
            assert await w.line(lambda t: "Hello" in t) == "Hello dear users!"


# -- acknowledge ---------------------------------------------------------------------------------


async def test_send_with_acknowledge_200_after_ack_and_408_without(tmp_path: Path) -> None:
    with running_server(tmp_path, PUSHGATE_ACK_TIMEOUT_MS="1500") as srv:
        acking = client_obj("ack@test.ee", "d1")
        silent = client_obj("silent@test.ee", "d2")
        async with pushca_client(srv, acking) as a, \
                pushca_client(srv, silent, auto_ack=False) as s, srv.http() as http:
            r = await http.post("/send-notification-with-acknowledge", json={
                "id": "m-1", "client": acking, "message": "please ack"})
            assert r.status_code == 200, r.text
            assert r.json()["results"][0]["acked_by"]
            assert await a.message() == ("m-1", "please ack")
            # no id given: the message id is the event's seq
            r = await http.post("/send-notification-with-acknowledge", json={
                "client": acking, "message": {"call": "incoming"}})
            assert r.status_code == 200, r.text
            seq = r.json()["results"][0]["seq"]
            assert await a.message() == (str(seq), '{"call":"incoming"}')
            # the client that never acknowledges: 408 after ack_timeout_ms
            r = await http.post("/send-notification-with-acknowledge", json={
                "id": "m-2", "client": silent, "message": "nobody acks"})
            assert r.status_code == 408, r.text
            assert r.json()["error"]["code"] == "ack_timeout"
            assert await s.message() == ("m-2", "nobody acks")
            # acknowledging later does not matter any more; an unknown id is ignored
            assert await s.command("ACKNOWLEDGE", {"messageId": "m-2"}) is None
            assert await s.command("ACKNOWLEDGE", {"messageId": "never-sent"}) is None
            # SEND_MESSAGE_WITH_ACKNOWLEDGE to the silent client: the ack_timeout error
            body = await a.command("SEND_MESSAGE_WITH_ACKNOWLEDGE", {
                "client": silent, "message": "nobody acks either"})
            assert body is not None
            assert json.loads(body)["error"]["code"] == "ack_timeout"
            mid, body = await s.message()
            assert body == "nobody acks either" and mid is not None and mid.isdigit()
            # ACKNOWLEDGE without messageId: an error RESPONSE naming the field
            body = await s.command("ACKNOWLEDGE", {})
            assert body is not None
            assert json.loads(body)["error"]["field"] == "metaData.messageId"


async def test_two_messages_waiting_under_one_id_are_each_acknowledged(tmp_path: Path) -> None:
    """Two sends-with-acknowledge that show one messageId (an id-less message's id is its
    seq, "1", and the other's id is "1"; or two senders' same id): each ACKNOWLEDGE of
    that id releases one of them, oldest first (the second sender got 408 although the
    client acknowledged both)."""
    with running_server(tmp_path, PUSHGATE_ACK_TIMEOUT_MS="5000") as srv:
        target = client_obj("twice@test.ee")
        async with pushca_client(srv, target, auto_ack=False) as c, srv.http() as http:

            async def send(**extra: Any) -> httpx.Response:
                return await http.post("/send-notification-with-acknowledge",
                                       json={"client": target, **extra})

            first = asyncio.ensure_future(send(message="no id"))  # seq 1: id "1"
            assert await c.message() == ("1", "no id")
            second = asyncio.ensure_future(send(message="id one", id="1"))
            assert await c.message() == ("1", "id one")
            for _ in range(2):
                assert await c.command("ACKNOWLEDGE", {"messageId": "1"}, wait=False) is None
            r1, r2 = await asyncio.gather(first, second)
            assert (r1.status_code, r2.status_code) == (200, 200), (r1.text, r2.text)
            assert [r.json()["results"][0]["seq"] for r in (r1, r2)] == [1, 2]


async def test_a_pushca_session_waits_on_at_most_32_sends_with_acknowledge(
        tmp_path: Path) -> None:
    """As a native session's sends (docs/protocol.md, flow control): a Pushca client that
    writes many SEND_MESSAGE_WITH_ACKNOWLEDGE (each may wait ack_timeout_ms) is not read
    further while 32 wait: a PING it writes once they are waiting is answered only when
    the first of them ends, at its ack timeout (all of them waited at once before, and
    the PING was answered at once)."""
    with running_server(tmp_path, PUSHGATE_ACK_TIMEOUT_MS="3000") as srv:
        target = client_obj("slow-acker@test.ee")
        async with pushca_client(srv, client_obj("flood@test.ee")) as c, \
                pushca_client(srv, target, auto_ack=False) as r:
            for i in range(40):
                await c.command("SEND_MESSAGE_WITH_ACKNOWLEDGE", {
                    "client": target, "message": str(i), "id": f"s{i}"}, wait=False)
            for _ in range(32):  # 32 read and waiting (their ack timers running)
                await r.message()
            t0 = asyncio.get_running_loop().time()
            assert await c.command("PING", None) is None
            assert asyncio.get_running_loop().time() - t0 >= 1.5
            # all 40 were read in the end, each stored and answered (not acknowledged)
            await wait_for(lambda: sum(x.startswith("s") or "ack_timeout" in x
                                       for x in c.raw), 15, "every send answered",
                           until=lambda n: n == 40)
        async with srv.http() as http:
            r = await http.get("/v1/users/slow-acker@test.ee/events", params={"limit": 100})
            assert len(r.json()["events"]) == 40


async def test_large_stored_messages_are_written_whole_and_in_order(tmp_path: Path) -> None:
    """A stored event over inline_event_max_bytes reaches native clients as ``head``
    only; a Pushca client gets the whole message, and what was sent after it comes
    after it."""
    with running_server(tmp_path, PUSHGATE_INLINE_EVENT_MAX_BYTES="64") as srv:
        dora = client_obj("dora@test.ee", "d1")
        async with pushca_client(srv, dora) as d, srv.http() as http:
            big = "x" * 5000
            send = asyncio.create_task(http.post("/send-notification-with-acknowledge", json={
                "id": "big-1", "client": dora, "message": big}))
            assert await d.message() == ("big-1", big)
            r = await asyncio.wait_for(send, TIMEOUT)
            assert r.status_code == 200, r.text
            for n in range(3):  # plain large ones, in order with small ones between
                for body in (f"{n}" * 100, f"small {n}"):
                    r = await http.post("/v1/notifications", json={
                        "users": ["dora@test.ee"], "body": body})
                    assert r.status_code == 200
            assert [(await d.message())[1] for _ in range(6)] == [
                b for n in range(3) for b in (f"{n}" * 100, f"small {n}")]


# -- filters ---------------------------------------------------------------------------------------


async def test_filter_find_any_and_exclude_reach_pushca_clients(server: ServerProcess) -> None:
    clients = [client_obj(f"u{i}@test.ee", f"d{i}", application="JAVA_HEADLESS")
               for i in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        cs = [await stack.enter_async_context(pushca_client(server, c)) for c in clients]
        async with ws_client(server, "native", ws="workSpaceMain",
                             app="JAVA_HEADLESS") as native, server.http() as http:
            # findAny: each message reaches exactly one of the four matching sessions,
            # round-robin: four messages, four different receivers
            receivers = []
            for n in range(4):
                r = await http.post("/send-notification", json={
                    "filter": {"workSpaceId": "workSpaceMain", "applicationId": "JAVA_HEADLESS",
                               "findAny": True}, "message": f"any-{n}"})
                assert r.status_code == 200 and r.json()["sessions"] == 1, r.text
            # each reply came after the hub wrote the message: a round trip on each
            # connection (its answer written after them) brings everything to the client
            for i, c in enumerate(cs):
                assert await c.command("PING", None) is None
                while not c.messages.empty():
                    receivers.append((i, c.messages.get_nowait()[1]))
            await native.send({"type": "ping"})
            while (frame := await native.recv())["type"] != "pong":
                assert frame["type"] == "event"
                receivers.append((3, frame["body"]))
            assert sorted(b for _, b in receivers) == [f"any-{n}" for n in range(4)]
            assert sorted(i for i, _ in receivers) == [0, 1, 2, 3]
            # exclude: a multicast to the application, not to u1 nor the native client
            r = await http.post("/send-notification", json={
                "filter": {"workSpaceId": "workSpaceMain", "applicationId": "JAVA_HEADLESS",
                           "exclude": [{"accountId": "u1@test.ee"}, {"accountId": "native"}]},
                "message": "not for u1"})
            assert r.json()["sessions"] == 2, r.text
            assert await cs[0].message() == (None, "not for u1")
            assert await cs[2].message() == (None, "not for u1")
            assert await cs[1].command("PING", None) is None
            await cs[1].no_message()


# -- commands --------------------------------------------------------------------------------------


async def test_commands_in_both_forms(server: ServerProcess) -> None:
    alice, bob = client_obj("alice@test.ee", "a1"), client_obj("bob@test.ee", "b1")
    async with pushca_client(server, alice) as a, pushca_client(server, bob) as b, \
            ws_client(server, "carol", ws="workSpaceMain") as carol:
        # SEND_MESSAGE to a filter: answered <uuid>@@ACKNOWLEDGE; bob gets the message
        # (a Pushca client's message as is, no sender wrapper), so does the native carol
        assert await a.command("SEND_MESSAGE", {
            "id": None, "filter": {"workSpaceId": "workSpaceMain", "accountId": "bob@test.ee"},
            "sender": alice, "message": "hi bob", "preserveOrder": True}) is None
        assert await b.message() == (None, "hi bob")
        assert await a.command("SEND_MESSAGE", {
            "filter": {"accountId": "carol"}, "message": "hi carol"}) is None
        ev = await carol.recv_type("event")
        assert ev["body"] == "hi carol" and ev["seq"] is None
        # order is kept: ten sends, received in order
        for n in range(10):
            await a.command("SEND_MESSAGE", {"filter": {"accountId": "bob@test.ee"},
                                             "message": f"n{n}"}, wait=False)
        assert [(await b.message())[1] for _ in range(10)] == [f"n{n}" for n in range(10)]
        # SEND_MESSAGE_WITH_ACKNOWLEDGE: bob gets <id>@@<body> and acknowledges; alice's
        # answer comes under the message id, as Pushca's client waits for it
        assert await a.command("SEND_MESSAGE_WITH_ACKNOWLEDGE", {
            "id": "d3259cf4-e41c-4e83-b751-514f42b7e3e2", "client": bob, "sender": alice,
            "message": "WithAcknowledgeTest1", "preserveOrder": False},
            answer_id="d3259cf4-e41c-4e83-b751-514f42b7e3e2") is None
        assert await b.message() == ("d3259cf4-e41c-4e83-b751-514f42b7e3e2",
                                     "WithAcknowledgeTest1")
        # a native client's send reaches bob in Pushca's form (the native sender wrapper)
        reply = await carol.request({"type": "send", "filter": {"account": "bob@test.ee"},
                                     "body": "from carol"})
        assert reply["type"] == "reply" and reply["sessions"] == 1
        _, body = await b.message()
        assert json.loads(body) == {"from": {"user": "carol", "workspace": "workSpaceMain",
                                             "device": "", "application": ""},
                                    "body": "from carol"}
        # a client's Pushca message is text: an object shaped like a native client send
        # named any sender to carol, who trusts "from" (it was delivered as is)
        forged = {"from": {"user": "admin", "workspace": "workSpaceMain", "device": "",
                           "application": ""}, "body": "reset your password"}
        for name, meta in (("SEND_MESSAGE", {"filter": {"accountId": "carol"}}),
                           ("SEND_MESSAGE_WITH_ACKNOWLEDGE", {"client": client_obj("carol")})):
            body = await a.command(name, {**meta, "message": forged})
            assert body is not None
            assert json.loads(body)["error"] == {
                "code": "invalid_request", "field": "message", "retryable": False,
                "message": "'message' must be a string: a client's Pushca message is text"}
        assert await a.command("SEND_MESSAGE", {  # the next one carol gets
            "filter": {"accountId": "carol"}, "message": "after"}) is None
        assert (await carol.recv_type("event"))["body"] == "after"
        # the document's JSON form: PING answered PONG, ACKNOWLEDGE silent
        await a.ws.send(json.dumps({"command": "PING"}))
        assert await a.message() == (None, "PONG")
        # channel commands: a clear error RESPONSE
        body = await a.command("ADD_MEMBERS_TO_CHANNEL", {"channel": {"id": "c1"}})
        assert body is not None
        err = json.loads(body)["error"]
        assert err["code"] == "not_supported" and "channels are not supported" in err["message"]
        # bad input: named fields
        body = await a.command("SEND_MESSAGE", {"filter": {"accountId": "bob@test.ee"}})
        assert body is not None and json.loads(body)["error"]["field"] == "message"
        body = await a.command("SEND_MESSAGE", {"filter": {"workSpaceId": "other"},
                                                "message": "x"})
        assert body is not None and json.loads(body)["error"]["field"] == "filter.workSpaceId"
        cid = str(uuid.uuid4())
        fut: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        a.answers[cid] = fut
        await a.ws.send(f"{cid}@@SEND_MESSAGE@@{{not json")
        body = await asyncio.wait_for(fut, TIMEOUT)
        assert body is not None and json.loads(body)["error"]["field"] == "metaData"
        # a message id that holds '@@' could not be split off: the seq stands for it
        async with server.http() as http:
            send = asyncio.create_task(http.post("/send-notification-with-acknowledge", json={
                "id": "odd@@id", "client": bob, "message": "odd"}))
            mid, body = await b.message()
            assert body == "odd" and mid is not None and mid.isdigit()
            r = await asyncio.wait_for(send, TIMEOUT)
            assert r.status_code == 200, r.text
            assert r.json()["results"][0]["seq"] == int(mid)
        # nothing else reached bob: no hello, no replies, no head frames
        assert all("\"type\"" not in m for m in b.raw), b.raw


# -- the keyless open-connection -------------------------------------------------------------------


async def test_keyless_open_connection_restricted_and_rate_limited(tmp_path: Path) -> None:
    with running_server(tmp_path, PUSHGATE_PUSHCA_PUBLIC_OPEN_CONNECTION="true",
                        PUSHGATE_PUSHCA_PUBLIC_WORKSPACES="workSpaceMain",
                        PUSHGATE_PUSHCA_PUBLIC_APPLICATIONS="MY_APPLICATION,OTHER_APP",
                        PUSHGATE_PUSHCA_PUBLIC_RATE_PER_IP="0.2",
                        PUSHGATE_PUSHCA_PUBLIC_BURST="4",
                        PUSHGATE_TRUSTED_PROXIES="127.0.0.1",
                        PUSHGATE_ALLOWED_ORIGINS="http://app.example") as srv:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=TIMEOUT) as http:
            # a plain OPTIONS (no Origin: no preflight) says what is allowed and takes
            # nothing from the keyless rate (the burst of 4 is used below)
            for _ in range(10):
                r = await http.options("/open-connection")
                assert (r.status_code, r.headers["allow"]) == (204, "POST, OPTIONS")
            # CORS preflight, as a browser on the allowed origin sends it
            r = await http.options("/open-connection", headers={
                "Origin": "http://app.example", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type"})
            assert r.status_code == 200
            assert r.headers["access-control-allow-origin"] == "http://app.example"
            r = await http.options("/open-connection", headers={
                "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
            assert r.status_code == 400 and r.json() == {"error": {
                "code": "invalid_request", "message": "Disallowed CORS origin",
                "field": "Origin", "retryable": False}}
            # 1: allowed workspace and application, no key: a Pushca token
            r = await http.post("/open-connection", json={"client": client_obj("pub")},
                                headers={"Origin": "http://app.example"})
            assert r.status_code == 200, r.text
            assert r.headers["access-control-allow-origin"] == "http://app.example"
            reply = r.json()
            async with pushca(reply["browserAdvertisedUrl"], origin="http://app.example"):
                pass
            # the websocket's Origin is checked as on /v1/ws
            async with connect(reply["browserAdvertisedUrl"], open_timeout=TIMEOUT,
                               origin="http://evil.example") as ws:  # type: ignore[arg-type]
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), TIMEOUT)
                assert ws.close_code == 4103
            # ... which does not open a native session nor register devices
            async with ws_client(srv, token=reply["token"], expect_hello=False) as native:
                code, reason = await native.closed()
                assert code == 4103 and "Pushca connections" in reason
            r = await http.post("/v1/devices", json={"platform": "fcm", "token": "t"},
                                headers={"Authorization": f"Bearer {reply['token']}"})
            assert r.status_code == 403 and r.json()["error"]["field"] == "token"
            # 2, 3: another workspace or application: 403 naming the field (with CORS)
            r = await http.post("/open-connection", headers={"Origin": "http://app.example"},
                                json={"client": client_obj("pub", workspace="admins")})
            assert r.status_code == 403
            assert r.json()["error"]["field"] == "client.workSpaceId"
            assert r.headers["access-control-allow-origin"] == "http://app.example"
            r = await http.post("/open-connection", json={
                "client": client_obj("pub", application="BACKOFFICE")})
            assert r.status_code == 403
            assert r.json()["error"]["field"] == "client.applicationId"
            # 4 is the burst's last; 5: 429 with Retry-After (0.2/s: 5 s)
            r = await http.post("/open-connection", json={
                "client": client_obj("pub", application="OTHER_APP")})
            assert r.status_code == 200
            r = await http.post("/open-connection", json={"client": client_obj("pub")})
            assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
            assert r.headers["retry-after"] == "5"
            # per client IP: behind a trusted proxy, the X-Forwarded-For address
            for _ in range(4):
                r = await http.post("/open-connection", json={"client": client_obj("pub")},
                                    headers={"X-Forwarded-For": "203.0.113.7"})
                assert r.status_code == 200, r.text
            r = await http.post("/open-connection", json={"client": client_obj("pub")},
                                headers={"X-Forwarded-For": "203.0.113.7"})
            assert r.status_code == 429
            # with the API key: not limited by the keyless rate nor the lists
            r = await http.post("/open-connection", json={
                "client": client_obj("pub", workspace="admins")},
                headers={"Authorization": f"Bearer {srv.api_key}"})
            assert r.status_code == 200, r.text
            async with ws_client(srv, token=r.json()["token"]) as native:
                assert native.hello["user"] == "pub"
            # a wrong key is refused, not taken as keyless
            r = await http.post("/open-connection", json={"client": client_obj("pub")},
                                headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401


async def test_keyless_open_connection_is_off_by_default(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=TIMEOUT) as http:
        r = await http.post("/open-connection", json={"client": client_obj("pub")})
        assert r.status_code == 401 and r.json()["error"]["field"] == "Authorization"
        r = await http.options("/open-connection", headers={
            "Origin": "http://app.example", "Access-Control-Request-Method": "POST"})
        assert r.status_code == 405
