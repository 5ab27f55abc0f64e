"""The cluster, end to end with real processes: gRPC routers, cluster hubs, real Redis,
the run's MariaDB database. Behaviour must match embedded mode across hubs, and
survive a hub kill, a router restart and a Redis restart that loses its data."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import orjson
import pytest
from grpc import aio

from deploy.local.redis import PrivateRedis
from pushgate.rpc import pushgate_pb2 as pb
from pushgate.rpc import pushgate_pb2_grpc as pb_grpc
from tests import services
from tests.integration.cluster import Cluster, running_cluster, wait_ready
from tests.integration.conftest import ServerProcess, ws_client
from tests.services import free_port

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def store_url(mysql_run_db: str) -> str:
    services.empty_tables(mysql_run_db)
    return mysql_run_db


@pytest.fixture
def cluster(tmp_path: Path, store_url: str, redis_server: str, redis_prefix: str) -> Iterator[Cluster]:
    metrics = f"127.0.0.1:{free_port()}"
    with running_cluster(tmp_path, store_url=store_url, redis_url=redis_server,
                         prefix=redis_prefix, PUSHGATE_ROUTER_METRICS_LISTEN=metrics) as c:
        yield c


async def post(hub: ServerProcess, path: str, body: dict[str, object]) -> httpx.Response:
    async with hub.http() as http:
        return await http.post(path, json=body)


async def get(hub: ServerProcess, path: str) -> httpx.Response:
    async with hub.http() as http:
        return await http.get(path)


async def wait_for(check, timeout: float = 10.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def session_count(hub: ServerProcess, user: str) -> int:
    r = await get(hub, f"/v1/users/{user}/sessions")
    return len(r.json()["sessions"]) if r.status_code == 200 else -1


async def test_users_on_different_hubs_reach_each_other(cluster: Cluster) -> None:
    h0, h1 = cluster.hubs
    async with ws_client(h0, "alice") as alice, ws_client(h1, "bob") as bob:
        # HTTP send on hub 0 to a user on hub 1: stored, then delivered
        r = await post(h0, "/v1/notifications", {"users": ["bob"], "body": {"n": 1}})
        assert r.status_code == 200, r.text
        assert r.json()["results"] == [{"user": "bob", "seq": 1, "sessions": 1}]
        ev = await bob.recv_type("event")
        assert (ev["seq"], ev["body"]) == (1, {"n": 1})
        # client-to-client through the websocket, across hubs
        reply = await alice.request({"type": "send", "users": ["bob"], "body": {"hi": "bob"}})
        assert reply["type"] == "reply" and reply["results"][0]["seq"] == 2
        ev = await bob.recv_type("event")
        assert ev["body"] == {"from": {"user": "alice", "workspace": "default", "device": "",
                                       "application": ""}, "body": {"hi": "bob"}}
        reply = await bob.request({"type": "send", "users": ["alice"], "body": "pong", "ttl": 0})
        assert reply["results"] == [{"user": "alice", "seq": None, "sessions": 1}]
        assert (await alice.recv_type("event"))["body"]["body"] == "pong"
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
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://{cluster.env['PUSHGATE_ROUTER_METRICS_LISTEN']}/metrics")).text
    stored = next(line for line in text.splitlines()
                  if line.startswith('pushgate_sends_total{kind="stored"}'))
    assert float(stored.split()[-1]) == 3.0


async def test_sixth_session_on_another_hub_kicks_the_oldest(cluster: Cluster) -> None:
    h0, h1 = cluster.hubs
    async with ws_client(h0, "carol") as first, contextlib.AsyncExitStack() as stack:
        for i in range(4):
            await stack.enter_async_context(ws_client(h0 if i % 2 else h1, "carol"))
        assert await session_count(h0, "carol") == 5
        async with ws_client(h1, "carol") as sixth:
            kicked = await first.recv_type("kicked")
            assert kicked["by"] == sixth.hello["session"]
            code, _ = await first.closed()
            assert code == 4102
            await wait_for(lambda: _eq(session_count(h1, "carol"), 5), what="5 sessions")
            r = await post(h1, "/v1/notifications", {"users": ["carol"], "body": "x"})
            assert r.json()["results"][0]["sessions"] == 5


async def _eq(coro, value) -> bool:  # type: ignore[no-untyped-def]
    return bool(await coro == value)


async def test_hub_killed_sessions_leave_and_clients_resume_elsewhere(cluster: Cluster) -> None:
    h0, h1 = cluster.hubs
    async with ws_client(h0, "dave") as dave:
        r = await post(h1, "/v1/notifications", {"users": ["dave"], "body": 1})
        assert (await dave.recv_type("event"))["seq"] == r.json()["results"][0]["seq"] == 1
        h0.stop(signal.SIGKILL)
        # accepted while dave is away: stored, nobody live to deliver to
        accepted = []
        for i in range(2, 6):
            r = await post(h1, "/v1/notifications", {"users": ["dave"], "body": i})
            assert r.status_code == 200
            accepted.append(r.json()["results"][0]["seq"])
        assert accepted == [2, 3, 4, 5]
        # the dead hub's session leaves the directory within the liveness window (2 s)
        t0 = time.monotonic()
        await wait_for(lambda: _eq(session_count(h1, "dave"), 0), 10, "dead hub's sessions gone")
        assert time.monotonic() - t0 < 8
    # the client reconnects to the other hub and gets everything after its last seq
    async with ws_client(h1, "dave", after=1) as again:
        seqs = [(await again.recv_type("event"))["seq"] for _ in accepted]
        assert seqs == accepted
        r = await post(h1, "/v1/notifications", {"users": ["dave"], "body": "live"})
        assert (await again.recv_type("event"))["seq"] == 6


async def test_router_restart_hubs_resync_and_nothing_accepted_is_lost(cluster: Cluster) -> None:
    h0, h1 = cluster.hubs
    router = cluster.routers[0]
    async with ws_client(h1, "erin") as erin:
        accepted: list[int] = []
        failures: list[int] = []

        async def sender() -> None:
            async with h0.http() as http:
                for i in range(60):
                    r = await http.post("/v1/notifications", json={
                        "users": ["erin"], "body": i, "id": f"e{i}"})
                    if r.status_code == 200:
                        accepted.append(r.json()["results"][0]["seq"])
                    else:  # the gap: a retryable error, never a silent drop
                        assert r.status_code == 503, r.text
                        assert r.json()["error"]["retryable"] is True
                        failures.append(i)
                    await asyncio.sleep(0.03)

        task = asyncio.create_task(sender())
        await asyncio.sleep(0.4)
        router.stop()
        await asyncio.sleep(0.5)
        router.start()  # same address: hubs reconnect with backoff and re-sync
        await task
        wait_ready(h0)
        wait_ready(h1)
        # erin's session is back in the (re-synced) directory and live delivery works
        await wait_for(lambda: _eq(session_count(h0, "erin"), 1), what="erin re-synced")
        r = await post(h0, "/v1/notifications", {"users": ["erin"], "body": "after"})
        last = r.json()["results"][0]["seq"]
        assert r.json()["results"][0]["sessions"] == 1
        got: set[int] = set()
        while last not in got:
            got.add((await erin.recv_type("event"))["seq"])
    assert failures, "the restart should have been noticed by the sender"
    r = await get(h1, "/v1/users/erin/events?after=0&limit=1000")
    stored = [e["seq"] for e in r.json()["events"]]
    assert stored == list(range(1, len(stored) + 1))  # dense, no reuse
    assert set(accepted) <= set(stored)


async def test_redis_restart_without_data_directory_rebuilt_seqs_continue(
        tmp_path: Path, store_url: str) -> None:
    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    try:
        with running_cluster(tmp_path, store_url=store_url, redis_url=redis.url,
                             prefix="pg:") as c:
            h0, h1 = c.hubs
            async with ws_client(h0, "frank") as frank, ws_client(h1, "gina") as gina:
                r = await post(h1, "/v1/notifications", {"users": ["frank", "gina"], "body": 1})
                assert [x["sessions"] for x in r.json()["results"]] == [1, 1]
                await frank.recv_type("event")
                await gina.recv_type("event")
                redis.stop()  # its data is gone
                redis.start()  # same port
                # hubs re-sync when the routers notice the lost epoch
                await wait_for(lambda: _eq(session_count(h0, "frank"), 1), 15, "re-sync")
                await wait_for(lambda: _eq(session_count(h0, "gina"), 1), 15, "re-sync")
                r = await post(h0, "/v1/notifications", {"users": ["frank", "gina"], "body": 2})
                assert r.status_code == 200
                assert [(x["seq"], x["sessions"]) for x in r.json()["results"]] == [(2, 1), (2, 1)]
                assert (await frank.recv_type("event"))["seq"] == 2
                assert (await gina.recv_type("event"))["seq"] == 2
    finally:
        redis.stop()


async def test_business_server_uses_the_grpc_api_on_two_routers(
        tmp_path: Path, store_url: str, redis_server: str, redis_prefix: str) -> None:
    with running_cluster(tmp_path, store_url=store_url, redis_url=redis_server,
                         prefix=redis_prefix, routers=2) as c:
        h0, h1 = c.hubs
        key = c.env["PUSHGATE_API_KEYS"]
        md = (("authorization", f"Bearer {key}"),)
        channels = [aio.insecure_channel(r.address) for r in c.routers]
        stubs = [pb_grpc.GatewayStub(ch) for ch in channels]
        try:
            async with ws_client(h0, "hank") as hank0, ws_client(h1, "hank") as hank1:
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
