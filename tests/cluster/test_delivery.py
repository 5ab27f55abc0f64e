"""Delivery across hubs: HTTP, client-to-client, filters, acks, the inbox, the session
quota across hubs, and the gRPC API of two routers. Behaviour must match embedded mode
whichever hub a client or a business server uses."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pytest
from grpc import aio

from deploy.local.cluster import Endpoint, LocalCluster
from pushgate.rpc import pushgate_pb2 as pb
from pushgate.rpc import pushgate_pb2_grpc as pb_grpc
from tests.cluster.conftest import direct_cluster
from tests.support.api import api
from tests.support.waiting import wait_for
from tests.support.ws import ws_client

pytestmark = pytest.mark.timeout(180)


async def post(hub: Endpoint, path: str, body: dict[str, object]) -> httpx.Response:
    async with api(hub) as http:
        return await http.post(path, json=body)


async def get(hub: Endpoint, path: str) -> httpx.Response:
    async with api(hub) as http:
        return await http.get(path)


async def session_count(hub: Endpoint, user: str) -> int:
    r = await get(hub, f"/v1/users/{user}/sessions")
    return len(r.json()["sessions"]) if r.status_code == 200 else -1


async def test_find_any_rotates_over_the_sessions_of_every_hub_in_id_order(
        cluster: LocalCluster) -> None:
    """http-api.md: ``find_any`` delivers to exactly one matching session, rotating over
    the matching sessions in session-id order from one call to the next — over the
    whole cluster, not hub by hub (three workers on hub 0 and one on hub 1: each gets a
    quarter, not the lone one half)."""
    h0, h1 = cluster.hub(0), cluster.hub(1)
    async with contextlib.AsyncExitStack() as stack:
        workers = [await stack.enter_async_context(ws_client(hub, f"w{i}", ws="rr", app="worker"))
                   for i, hub in enumerate((h0, h0, h0, h1))]
        await stack.enter_async_context(ws_client(h1, "other", ws="rr-not", app="worker"))
        by_id = {w.hello["session"]: w for w in workers}
        order = [by_id[sid] for sid in sorted(by_id)]
        got = []
        waiting = {w: asyncio.create_task(w.recv_type("event", 60)) for w in workers}
        try:
            for i in range(8):
                r = await post((h0, h1)[i % 2], "/v1/notifications", {
                    "filter": {"workspace": "rr", "find_any": True}, "body": {"i": i}})
                assert r.status_code == 200 and r.json()["sessions"] == 1, r.text
                done, _ = await asyncio.wait(waiting.values(), timeout=10,
                                             return_when=asyncio.FIRST_COMPLETED)
                assert len(done) == 1, f"send {i}: {len(done)} workers got it"
                receiver = next(w for w, t in waiting.items() if t in done)
                assert done.pop().result()["body"] == {"i": i}  # (not an extra copy)
                got.append(receiver)
                waiting[receiver] = asyncio.create_task(receiver.recv_type("event", 60))
        finally:
            for t in waiting.values():
                t.cancel()
        start = order.index(got[0])
        assert got == [order[(start + k) % 4] for k in range(8)]


async def test_users_on_different_hubs_reach_each_other(cluster: LocalCluster) -> None:
    h0, h1 = cluster.hub(0), cluster.hub(1)
    async with ws_client(h0, "alice") as alice, ws_client(h1, "bob") as bob:
        # HTTP send on hub 0 to a user on hub 1: stored, then delivered
        r = await post(h0, "/v1/notifications", {"users": ["bob"], "body": {"n": 1}})
        assert r.status_code == 200, r.text
        assert r.json()["results"] == [{"user": "bob", "seq": 1, "sessions": 1}]
        ev = await bob.recv_type("event")
        assert (ev["seq"], ev["body"]) == (1, {"n": 1})
        # client-to-client through the websocket, across hubs
        reply = await alice.request({"type": "send", "users": ["bob"], "body": {"hi": "bob"}})
        assert reply["type"] == "reply"
        assert (reply["results"][0]["seq"], reply["results"][0]["sessions"]) == (2, 1)
        ev = await bob.recv_type("event")
        assert ev["body"] == {"from": {"user": "alice", "workspace": "default", "device": "",
                                       "application": ""}, "body": {"hi": "bob"}}
        reply = await bob.request({"type": "send", "users": ["alice"], "body": "pong", "ttl": 0})
        assert reply["results"] == [{"user": "alice", "seq": None, "sessions": 1}]
        ev = await alice.recv_type("event")
        assert ev["body"]["body"] == "pong" and ev["body"]["from"]["user"] == "bob"
        # a filter broadcast from either hub reaches the sessions of both
        r = await post(h1, "/v1/notifications", {"filter": {"workspace": "default"}, "body": "all"})
        assert r.status_code == 200 and r.json()["sessions"] == 2
        assert (await alice.recv_type("event"))["body"] == "all"
        assert (await bob.recv_type("event"))["body"] == "all"
        # find_any picks exactly one session in the whole cluster
        r = await post(h0, "/v1/notifications", {"filter": {"find_any": True}, "body": "one"})
        assert r.json()["sessions"] == 1
        # send-with-acknowledge across hubs: the ack travels back to the right router
        ack_send = asyncio.create_task(post(h0, "/v1/notifications", {
            "users": ["bob"], "body": "ack me", "ack": True, "ack_timeout_ms": 5000}))
        ev = await bob.recv_type("event")
        while ev["body"] != "ack me":
            ev = await bob.recv_type("event")
        await bob.send({"type": "ack", "seq": ev["seq"]})
        r = await ack_send
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["acked_by"] == bob.hello["session"]
        # the inbox and read state are the same from any hub
        r = await get(h0, "/v1/users/bob/events?after=0")
        assert [e["seq"] for e in r.json()["events"]] == [1, 2, 3]
        rs = await bob.request({"type": "read", "seqs": [1, 3]})
        assert (rs["head"], rs["unread"]) == (3, 1)
        assert (await get(h0, "/v1/users/bob/read-state")).json()["unread"] == 1
        # bad input is refused with the same errors as in embedded mode
        r = await post(h1, "/v1/notifications", {"users": ["bob"], "body": 1, "ttl": -1})
        assert r.status_code == 400 and r.json()["error"]["field"] == "ttl"
        r = await get(h1, "/v1/users/nobody/events")
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_user"
    # the router's own Prometheus endpoint counts what it routed
    metrics = cluster.router_metrics_urls[0]
    assert metrics is not None
    async with httpx.AsyncClient() as http:
        text = (await http.get(metrics)).text
    stored = next(line for line in text.splitlines()
                  if line.startswith('pushgate_sends_total{kind="stored"}'))
    assert float(stored.split()[-1]) == 3.0
    # and only that: the session metrics are the hubs' (docs/operations.md); a router's
    # pushgate_sessions 0 would halve an average over the cluster
    names = {line.split("{")[0].split()[0] for line in text.splitlines()
             if line and not line.startswith("#")}
    assert not names & {"pushgate_sessions", "pushgate_connects_total",
                        "pushgate_acks_total", "pushgate_delivery_latency_seconds_count",
                        "pushgate_gaps_held_total"}, sorted(names)


async def test_sixth_session_on_another_hub_kicks_the_oldest(cluster: LocalCluster) -> None:
    h0, h1 = cluster.hub(0), cluster.hub(1)
    async with ws_client(h0, "carol") as first, contextlib.AsyncExitStack() as stack:
        for i in range(4):
            await stack.enter_async_context(ws_client(h0 if i % 2 else h1, "carol"))
        assert await session_count(h0, "carol") == 5
        async with ws_client(h1, "carol") as sixth:
            kicked = await first.recv_type("kicked")
            assert kicked["by"] == sixth.hello["session"]
            code, _ = await first.closed()
            assert code == 4102
            await wait_for(lambda: session_count(h1, "carol"), 10, "carol's 5 sessions",
                           until=lambda n: n == 5)
            r = await post(h1, "/v1/notifications", {"users": ["carol"], "body": "x"})
            assert r.json()["results"][0]["sessions"] == 5


async def test_business_server_uses_the_grpc_api_on_two_routers(
        tmp_path: Path, shared: dict[str, Any]) -> None:
    with direct_cluster(tmp_path, shared, routers=2) as c:
        md = (("authorization", f"Bearer {c.api_key}"),)
        channels = [aio.insecure_channel(addr) for addr in c.router_addrs]
        stubs = [pb_grpc.GatewayStub(ch) for ch in channels]
        try:
            async with ws_client(c.hub(0), "hank") as hank0, ws_client(c.hub(1), "hank") as hank1:
                # any router delivers to any hub; seqs stay dense across routers
                for i in range(6):
                    reply = await stubs[i % 2].Send(
                        pb.SendRequest(users=["hank"], body=orjson.dumps({"i": i}), id=f"h{i}"),
                        metadata=md, timeout=10)
                    assert reply.results[0].seq == i + 1 and reply.results[0].sessions == 2
                for client in (hank0, hank1):
                    assert [(await client.recv_type("event"))["seq"] for _ in range(6)] == \
                        [1, 2, 3, 4, 5, 6]
                # idempotency across routers: same id, no second event
                again = await stubs[1].Send(pb.SendRequest(users=["hank"], body=b"0", id="h0"),
                                            metadata=md, timeout=10)
                assert again.results[0].duplicate and again.results[0].seq == 1
                # streaming send: one reply per request, errors per request
                reqs = [pb.SendRequest(users=["u1", "u2"], body=b'"c"', tag=1),
                        pb.SendRequest(users=["u3"], body=b"not json", tag=2)]

                async def gen():  # type: ignore[no-untyped-def]
                    for m in reqs:
                        yield m

                replies = {r.tag: r async for r in stubs[0].SendStream(gen(), metadata=md)}
                assert [x.seq for x in replies[1].results] == [1, 1]
                assert replies[2].error.code == "invalid_request"
                assert replies[2].error.field == "body"
                fetched = await stubs[1].FetchEvents(pb.FetchRequest(user="hank", after=4, limit=10),
                                                     metadata=md, timeout=10)
                assert [e.seq for e in fetched.events] == [5, 6] and fetched.head == 6
                assert orjson.loads(fetched.events[0].body) == {"i": 4}
                rs = await stubs[0].MarkRead(pb.MarkReadRequest(
                    user="hank", ranges=[pb.Range(first=1, last=5)]), metadata=md, timeout=10)
                assert (rs.head, rs.unread) == (6, 1)
                sessions = await stubs[1].Sessions(pb.UserRequest(user="hank"), metadata=md)
                assert {s.session_id for s in sessions.sessions} == {
                    hank0.hello["session"], hank1.hello["session"]}
                assert len({s.hub for s in sessions.sessions}) == 2  # one per hub
                # errors: status from the error table, details in the trailer
                with pytest.raises(aio.AioRpcError) as bad:
                    await stubs[0].Send(pb.SendRequest(users=["x"], body=b"1", ttl_s=-5),
                                        metadata=md, timeout=10)
                assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                trailer = dict(bad.value.trailing_metadata())["pushgate-error-bin"]
                assert pb.Error.FromString(trailer).field == "ttl"
                with pytest.raises(aio.AioRpcError) as unauth:
                    await stubs[0].ReadState(pb.UserRequest(user="hank"),
                                             metadata=(("authorization", "Bearer wrong"),))
                assert unauth.value.code() == grpc.StatusCode.UNAUTHENTICATED
        finally:
            for ch in channels:
                await ch.close()


async def test_an_ack_of_an_event_read_from_the_store_releases_the_send_on_any_router(
        tmp_path: Path, shared: dict[str, Any]) -> None:
    """protocol.md, ``ack``: a sender waiting with send-with-ack is released by the ack
    of its seq — also when the session got it in its connect backlog or a fetch reply,
    and whichever of the two routers took the send (its wait is in that router's
    memory)."""
    with direct_cluster(tmp_path, shared, hubs=1, routers=2) as c:
        hub = c.hub(0)
        for i in range(6):
            user, by_fetch = f"dora{i}", i % 2 == 1
            waiting = asyncio.create_task(post(hub, "/v1/notifications", {
                "users": [user], "body": i, "ack": True, "ack_timeout_ms": 8000}))
            await wait_for(lambda u=user: get(hub, f"/v1/users/{u}/events?after=0"), 10,
                           "the ack send stored", until=lambda r: r.status_code == 200)
            async with ws_client(hub, user, after=None if by_fetch else 0) as client:
                if by_fetch:
                    reply = await client.request({"type": "fetch", "after": 0})
                    seq = reply["events"][0]["seq"]
                else:
                    seq = (await client.recv_type("event"))["seq"]
                await client.send({"type": "ack", "seq": seq})
                r = await waiting
                assert r.status_code == 200, (i, r.text)
                assert r.json()["results"][0]["acked_by"] == client.hello["session"]


async def test_two_attempts_of_one_ack_send_through_both_routers_are_both_released(
        tmp_path: Path, shared: dict[str, Any]) -> None:
    """http-api.md: a retried ack send (same ``id``) pushes the stored event again and
    waits again. Two attempts at once, taken by the two routers: the session acks each
    copy it gets, and both attempts are answered 200 (each router waits for the ack in
    its memory)."""
    with direct_cluster(tmp_path, shared, hubs=1, routers=2) as c:
        hub = c.hub(0)
        async with ws_client(hub, "erin") as client:
            for i in range(5):
                body = {"users": ["erin"], "body": i, "id": f"twice-{i}", "ack": True,
                        "ack_timeout_ms": 8000}
                attempts = [asyncio.create_task(post(hub, "/v1/notifications", body))
                            for _ in range(2)]
                acked = 0
                while not all(a.done() for a in attempts):
                    try:
                        ev = await client.recv_type("event", timeout=0.5)
                    except TimeoutError:
                        continue
                    await client.send({"type": "ack", "seq": ev["seq"]})
                    acked += 1
                answers = [a.result() for a in attempts]
                assert [r.status_code for r in answers] == [200, 200], \
                    (i, acked, [r.text for r in answers])
