"""A Pushca browser client in real Chromium (clients/js/test/pushca-client.html: what
Pushca's published browser client does) against pushgate in the keyless open-connection
mode: the page calls ``/open-connection`` itself (CORS), connects to
``browserAdvertisedUrl``, receives and acknowledges messages, sends SEND_MESSAGE and
SEND_MESSAGE_WITH_ACKNOWLEDGE commands and gets their answers."""

from __future__ import annotations

import json
from pathlib import Path

from tests.sdk.conftest import make_server
from tests.sdk.test_js_sdk import browser, needs_node, page_server
from tests.support.pushca import client_obj, pushca_client, wait_sessions


@needs_node
async def test_pushca_browser_client_in_chromium(tmp_path: Path) -> None:
    srv = make_server(tmp_path, PUSHGATE_PUSHCA_PUBLIC_OPEN_CONNECTION="true",
                      PUSHGATE_PUSHCA_PUBLIC_WORKSPACES="workSpaceMain",
                      PUSHGATE_PUSHCA_PUBLIC_APPLICATIONS="MY_APPLICATION")
    srv.start()
    alice, bob = client_obj("alice@test.ee", "a-1"), client_obj("bob@test.ee", "b-1")
    try:
        with page_server(srv) as base:
            async with browser() as b, pushca_client(srv, bob) as bob_ws, srv.http() as http:
                await b.call("goto", url=f"{base}/test/pushca-client.html")
                # the page is on another origin than the gateway: CORS lets it read the reply
                data = await b.eval(f"pushca.open({json.dumps(srv.base_url)}, "
                                    f"{json.dumps(alice)})")
                assert data["browserAdvertisedUrl"] == \
                    f"ws://127.0.0.1:{srv.port}/{data['token']}"
                await wait_sessions(srv, "alice@test.ee")
                # /send-notification: a plain message
                r = await http.post("/send-notification", json={
                    "filter": {"workSpaceId": "workSpaceMain", "accountId": "alice@test.ee"},
                    "message": "Hello dear users!"})
                assert r.status_code == 200 and r.json()["sessions"] == 1, r.text
                # /send-notification-with-acknowledge: the page acknowledges, 200
                r = await http.post("/send-notification-with-acknowledge", json={
                    "id": "m-1", "client": alice, "message": "ack me"})
                assert r.status_code == 200, r.text
                assert r.json()["results"][0]["acked_by"]
                assert await b.eval("pushca.waitMessages(2)") == [
                    {"id": None, "body": "Hello dear users!"}, {"id": "m-1", "body": "ack me"}]
                # SEND_MESSAGE to a filter: bob gets it, the page's command succeeds
                res = await b.eval("pushca.broadcastMessage(null, {workSpaceId: "
                                   "'workSpaceMain', accountId: 'bob@test.ee'}, true, 'hi bob')")
                assert res == {"type": "SUCCESS", "body": None}
                assert await bob_ws.message() == (None, "hi bob")
                # SEND_MESSAGE_WITH_ACKNOWLEDGE: bob acknowledges, the page's command
                # succeeds under its message id
                res = await b.eval(f"pushca.sendMessageWithAcknowledge('w-1', "
                                   f"{json.dumps(bob)}, false, 'WithAcknowledgeTest1')")
                assert res == {"type": "SUCCESS", "body": None}
                assert await bob_ws.message() == ("w-1", "WithAcknowledgeTest1")
                # a channel command: the error RESPONSE
                res = await b.eval("pushca.addMembersToChannel({id: 'c1', name: 'c'}, [])")
                assert res["type"] == "SUCCESS"
                assert json.loads(res["body"])["error"]["code"] == "not_supported"
                # the page saw Pushca's messages only (no pushgate JSON frames)
                raw = await b.eval("pushca.raw")
                assert not any(m.startswith("{") for m in raw), raw
                assert await b.eval("pushca.closes") == []
    finally:
        srv.stop()
