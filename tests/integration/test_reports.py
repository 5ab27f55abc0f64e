"""Delivery reports end to end on the real ``pushgate serve``: the report id in every
send reply (HTTP, websocket ``send``, Pushca), exact counts for users with and without
live sessions, acks and read marks, one user's status, the latest reports, a restart,
and the errors of the report routes."""

from __future__ import annotations

import contextlib
from typing import Any

from tests.support.server import ServerProcess
from tests.support.waiting import wait_for
from tests.support.ws import ws_client


async def send(srv: ServerProcess, body: dict[str, Any], path: str = "/v1/notifications") -> dict:
    async with srv.http() as http:
        r = await http.post(path, json=body)
        assert r.status_code == 200, r.text
        return r.json()


async def report(srv: ServerProcess, rid: str) -> dict:
    async with srv.http() as http:
        r = await http.get(f"/v1/notifications/{rid}")
        assert r.status_code == 200, r.text
        return r.json()


def counts(rep: dict) -> dict[str, int]:
    keys = ("addressed", "stored", "duplicates", "delivered", "acked", "pushed", "push_failed",
            "read")
    return {k: rep[k] for k in keys}


async def wait_counts(srv: ServerProcess, rid: str, **expected: int) -> dict:
    """The report once it shows ``expected`` (counts are flushed every 0.5 s)."""
    want = {**dict.fromkeys(("addressed", "stored", "duplicates", "delivered", "acked",
                             "pushed", "push_failed", "read"), 0), **expected}

    async def check() -> dict | None:
        async with srv.http() as http:
            r = await http.get(f"/v1/notifications/{rid}")
        return r.json() if r.status_code == 200 and counts(r.json()) == want else None

    return await wait_for(check, timeout=15, what=f"report {rid} == {want}")


async def test_counts_sessions_acks_reads_and_user_status(server: ServerProcess) -> None:
    async with contextlib.AsyncExitStack() as stack:
        a1 = await stack.enter_async_context(ws_client(server, "alice"))
        a2 = await stack.enter_async_context(ws_client(server, "alice"))
        bob = await stack.enter_async_context(ws_client(server, "bob"))
        out = await send(server, {"users": ["alice", "bob", "carol"], "body": {"n": 1},
                                  "id": "promo-1"})
        assert out["report"] == "promo-1"
        ev_a = await a1.recv_type("event")
        await a2.recv_type("event")
        await bob.recv_type("event")
        # both of alice's sessions ack: alice counts once
        await a1.send({"type": "ack", "seq": ev_a["seq"]})
        await a2.send({"type": "ack", "seq": ev_a["seq"]})
        rep = await wait_counts(server, "promo-1", addressed=3, stored=3, delivered=2, acked=1)
        assert rep["failed_by_reason"] == {}
        # carol reads it later over HTTP; the idempotent repeat counts as a duplicate
        async with server.http() as http:
            r = await http.post("/v1/users/carol/read", json={"seqs": [1]})
            assert r.status_code == 200, r.text
        again = await send(server, {"users": ["alice"], "body": {"n": 1}, "id": "promo-1"})
        assert again["report"] == "promo-1" and again["results"][0]["duplicate"] is True
        await wait_counts(server, "promo-1", addressed=4, stored=3, duplicates=1, delivered=2,
                          acked=1, read=1)

        async with server.http() as http:
            users = {u: (await http.get(f"/v1/notifications/promo-1/users/{u}")).json()
                     for u in ("alice", "bob", "carol")}
            assert {u: (s["delivered"], s["acked"], s["read"]) for u, s in users.items()} == {
                "alice": (True, True, False), "bob": (True, False, False),
                "carol": (False, False, True)}
            assert users["alice"]["seq"] == ev_a["seq"] and users["alice"]["stored"] is True
            r = await http.get("/v1/notifications/promo-1/users/dave")
            assert r.status_code == 404
            assert r.json()["error"]["code"] == "unknown_report_user"
            r = await http.get("/v1/notifications/nope-xyz/users/alice")
            assert r.status_code == 404
            assert (r.json()["error"]["code"], r.json()["error"]["field"]) == \
                ("unknown_report", "report")


async def test_generated_ids_websocket_pushca_transient_and_latest(server: ServerProcess) -> None:
    async with ws_client(server, "alice") as alice:
        out = await send(server, {"users": ["alice", "nobody"], "body": 1})
        rid = out["report"]
        assert isinstance(rid, str) and rid
        await wait_counts(server, rid, addressed=2, stored=2, delivered=1)
        # the websocket send reply carries the report too
        reply = await alice.request({"type": "send", "rid": "s1", "users": ["alice"],
                                     "body": {"hi": 1}})
        ws_rid = reply["report"]
        await wait_counts(server, ws_rid, addressed=1, stored=1, delivered=1)
        # transient (ttl 0): delivered counted, nothing stored
        t = await send(server, {"users": ["alice"], "body": 2, "ttl": 0})
        await wait_counts(server, t["report"], addressed=1, delivered=1)
        # a Pushca filter send (transient): sessions reached
        p = await send(server, {"filter": {"accountId": "alice"}, "message": "x"},
                       "/send-notification")
        await wait_counts(server, p["report"], addressed=1, delivered=1)
    async with server.http() as http:
        r = await http.get("/v1/notifications", params={"limit": 2})
        assert r.status_code == 200
        assert [x["report"] for x in r.json()["reports"]] == [p["report"], t["report"]]
        r = await http.get("/v1/notifications", params={"limit": 0})
        assert r.status_code == 400 and r.json()["error"]["field"] == "limit"
        r = await http.get("/v1/notifications/never-sent")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "unknown_report"
        assert r.json()["error"]["field"] == "report"
        r = await http.get("/v1/notifications/" + "x" * 300)
        assert r.status_code == 400 and r.json()["error"]["field"] == "report"


async def test_a_report_read_right_after_its_send_is_there(server: ServerProcess) -> None:
    """The reply's ``report`` is readable at once: the read waits for the counts of the
    sends answered before it (they are written every 0.5 s), not 404 ``unknown_report``."""
    async with server.http() as http:
        for i in range(3):
            out = await send(server, {"users": ["quick", "quick2"], "body": i, "id": f"q-{i}"})
            r = await http.get(f"/v1/notifications/{out['report']}")
            assert r.status_code == 200, r.text
            assert (r.json()["addressed"], r.json()["stored"]) == (2, 2)


async def test_report_survives_a_restart(server: ServerProcess) -> None:
    async with ws_client(server, "alice") as alice:
        await send(server, {"users": ["alice", "bob"], "body": 1, "id": "r-restart"})
        await alice.recv_type("event")
        await wait_counts(server, "r-restart", addressed=2, stored=2, delivered=1)
        server.stop()
    server.start()
    assert counts(await report(server, "r-restart"))["delivered"] == 1
    await send(server, {"users": ["bob"], "body": 1, "id": "r-restart"})
    await wait_counts(server, "r-restart", addressed=3, stored=2, duplicates=1, delivered=1)


async def test_a_duplicate_leaves_the_reports_expiry_at_its_events(server: ServerProcess) -> None:
    """The report lives as long as its events: a retried send (a duplicate, stored
    nothing) with a longer ttl, or later, does not move ``expires_at``."""
    first = await send(server, {"users": ["exp"], "body": 1, "id": "r-exp", "ttl": 30})
    rep = await wait_counts(server, "r-exp", addressed=1, stored=1)
    async with server.http() as http:
        r = await http.get("/v1/notifications/r-exp/users/exp")
    assert r.status_code == 200, r.text
    event_expiry = r.json()["expires_at"]
    assert rep["expires_at"] == event_expiry
    again = await send(server, {"users": ["exp"], "body": 1, "id": "r-exp", "ttl": 600})
    assert again["results"][0]["duplicate"] is True
    assert again["results"][0]["seq"] == first["results"][0]["seq"]
    rep = await wait_counts(server, "r-exp", addressed=2, stored=1, duplicates=1)
    assert rep["expires_at"] == event_expiry
