"""Pushca clients in the cluster, through the shipped nginx (deploy/nginx/pushgate.conf):
the connection string ``/{jwt}`` advertised by ``/open-connection`` through nginx is
routed to a hub; a Pushca client on one hub is reached by a sender on the other hub
(HTTP and its own commands), and its ACKNOWLEDGE travels back to the router that holds
the sender's wait (two routers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy.local.cluster import LocalCluster
from tests.support.api import api
from tests.support.pushca import (
    TIMEOUT,
    client_obj,
    open_connection,
    pushca,
    pushca_client,
    wait_sessions,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(180)


async def test_pushca_client_on_one_hub_sender_on_the_other(
        cluster_binaries: None, tmp_path: Path, shared: dict[str, Any]) -> None:
    with LocalCluster(hubs=2, routers=2, workdir=tmp_path / "cluster", **shared) as c:
        hub_ids = [(await open_connection(c.hub(i), client_obj("probe")))["pusherInstanceId"]
                   for i in range(2)]
        alice, bob = client_obj("alice@test.ee", "a-1"), client_obj("bob@test.ee", "b-1")
        # alice through nginx: the advertised URL is nginx's, and nginx routes /{jwt}
        reply = await open_connection(c.edge, alice)
        assert reply["externalAdvertisedUrl"] == \
            f"ws://127.0.0.1:{c.nginx.port}/{reply['token']}"  # type: ignore[union-attr]
        async with pushca(reply["externalAdvertisedUrl"]) as a:
            await wait_sessions(c.edge, "alice@test.ee")
            async with api(c.edge) as http:
                r = await http.get("/v1/users/alice@test.ee/sessions")
            alice_hub = hub_ids.index(r.json()["sessions"][0]["hub"])
            other = c.hub(1 - alice_hub)
            # bob on the other hub sends to alice: with acknowledge, answered once alice
            # (the other hub) acknowledged, under the message id
            async with pushca_client(other, bob) as b:
                assert await b.command("SEND_MESSAGE_WITH_ACKNOWLEDGE", {
                    "id": "x-1", "client": alice, "message": "across hubs"},
                    answer_id="x-1") is None
                assert await a.message() == ("x-1", "across hubs")
                assert await b.command("SEND_MESSAGE", {
                    "filter": {"accountId": "alice@test.ee"}, "message": "plain"}) is None
                assert await a.message() == (None, "plain")
                # HTTP on the other hub: 200 after alice's ACKNOWLEDGE
                async with api(other) as http:
                    r = await http.post("/send-notification-with-acknowledge", json={
                        "id": "x-2", "client": alice, "message": "via http"})
                    assert r.status_code == 200, r.text
                    assert await a.message() == ("x-2", "via http")
                    # a filter with findAny across the hubs: one of the two each time (which
                    # one: the round-robin of the router that took the send)
                    for n in range(2):
                        r = await http.post("/send-notification", json={
                            "filter": {"workSpaceId": "workSpaceMain",
                                       "applicationId": "MY_APPLICATION", "findAny": True},
                            "message": f"any-{n}"})
                        assert r.status_code == 200 and r.json()["sessions"] == 1, r.text
                await wait_for(lambda: a.messages.qsize() + b.messages.qsize(), TIMEOUT,
                               "the two findAny messages", until=lambda n: n >= 2)
                for client in (a, b):  # a round trip: anything else would be here by now
                    assert await client.command("PING", None) is None
                got = [a.messages.get_nowait()[1] for _ in range(a.messages.qsize())] + \
                    [b.messages.get_nowait()[1] for _ in range(b.messages.qsize())]
                assert sorted(got) == ["any-0", "any-1"]
        # nginx logged the connection string's path without the token
        log = c.workdir / "nginx" / "access.log"
        text = await wait_for(lambda: log.read_text() if log.exists() else "", TIMEOUT,
                              "nginx's access log of the Pushca connection",
                              until=lambda t: '"GET /{jwt}"' in t)
        assert reply["token"] not in text
