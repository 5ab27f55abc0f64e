"""Delivery reports on a 2-hub 2-router cluster (MariaDB, Redis): exact counts when
several hubs and routers contribute (users with and without sessions, on both hubs,
acks through either router, read marks), the gRPC report calls, and a router restart
(counts persisted)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from grpc import aio

from deploy.local.cluster import Endpoint
from pushgate.rpc import pushgate_pb2 as pb
from pushgate.rpc import pushgate_pb2_grpc as pb_grpc
from tests.cluster.conftest import direct_cluster
from tests.support.api import api
from tests.support.waiting import wait_for
from tests.support.ws import ws_client

pytestmark = pytest.mark.timeout(180)

COUNTERS = ("addressed", "stored", "duplicates", "delivered", "acked", "pushed", "push_failed",
            "read")


async def wait_report(hub: Endpoint, rid: str, **expected: int) -> dict[str, Any]:
    want = {**dict.fromkeys(COUNTERS, 0), **expected}

    async def check() -> dict[str, Any] | None:
        async with api(hub) as http:
            r = await http.get(f"/v1/notifications/{rid}")
        if r.status_code != 200:
            return None
        got = r.json()
        return got if {k: got[k] for k in COUNTERS} == want else None

    return await wait_for(check, timeout=20, what=f"report {rid} == {want}")


async def test_counts_from_two_hubs_and_two_routers(tmp_path: Path, shared: dict[str, Any]) -> None:
    with direct_cluster(tmp_path, shared, routers=2) as c:
        h0, h1 = c.hub(0), c.hub(1)
        md = (("authorization", f"Bearer {c.api_key}"),)
        channels = [aio.insecure_channel(addr) for addr in c.router_addrs]
        stubs = [pb_grpc.GatewayStub(ch) for ch in channels]
        try:
            async with contextlib.AsyncExitStack() as stack:
                # ann on both hubs, ben on hub 1; cid and dee have no session
                ann0 = await stack.enter_async_context(ws_client(h0, "ann"))
                ann1 = await stack.enter_async_context(ws_client(h1, "ann"))
                ben = await stack.enter_async_context(ws_client(h1, "ben"))
                async with api(h0) as http:
                    r = await http.post("/v1/notifications", json={
                        "users": ["ann", "ben", "cid", "dee"], "body": {"n": 1}, "id": "c-1"})
                assert r.status_code == 200 and r.json()["report"] == "c-1"
                # the same id through the other router: duplicates, counted in the same report
                again = await stubs[1].Send(pb.SendRequest(
                    users=["ann", "ben"], body=b'{"n":1}', id="c-1"), metadata=md, timeout=10)
                assert again.report == "c-1" and all(x.duplicate for x in again.results)
                seq = (await ann0.recv_type("event"))["seq"]
                await ann1.recv_type("event")
                await ben.recv_type("event")
                # ann acks on both hubs (each hub's acks may reach another router): once
                await ann0.send({"type": "ack", "seq": seq})
                await ann1.send({"type": "ack", "seq": seq})
                # ben and cid read it (websocket and HTTP), cid twice
                await ben.request({"type": "read", "seqs": [seq]})
                async with api(h1) as http:
                    for _ in range(2):
                        assert (await http.post("/v1/users/cid/read",
                                                json={"seqs": [1]})).status_code == 200
                await wait_report(h1, "c-1", addressed=6, stored=4, duplicates=2, delivered=2,
                                  acked=1, read=2)

                # the gRPC calls, on either router
                rep = await stubs[0].GetReport(pb.ReportRequest(report="c-1"), metadata=md)
                assert (rep.addressed, rep.stored, rep.delivered, rep.acked, rep.read) == \
                    (6, 4, 2, 1, 2)
                user = await stubs[1].GetReportUser(
                    pb.ReportUserRequest(report="c-1", user="ann"), metadata=md)
                assert (user.seq, user.delivered, user.acked, user.read) == (seq, True, True, False)
                dee = await stubs[1].GetReportUser(
                    pb.ReportUserRequest(report="c-1", user="dee"), metadata=md)
                assert (dee.delivered, dee.acked, dee.read) == (False, False, False)
                listed = await stubs[1].ListReports(pb.ListReportsRequest(limit=5), metadata=md)
                assert "c-1" in [x.report for x in listed.reports]
                with pytest.raises(aio.AioRpcError) as missing:
                    await stubs[0].GetReport(pb.ReportRequest(report="nope"), metadata=md)
                assert missing.value.code() == grpc.StatusCode.NOT_FOUND
                trailer = dict(missing.value.trailing_metadata())["pushgate-error-bin"]
                assert pb.Error.FromString(trailer).code == "unknown_report"

                # a generated report id in the gRPC reply, a send through hub 1
                g = await stubs[0].Send(pb.SendRequest(users=["ben", "eve"],
                                                       body=orjson.dumps({"n": 2})),
                                        metadata=md, timeout=10)
                assert g.report.startswith("r-")
                # read at once through the other router: there, not 404 (its counts were
                # not flushed yet when the read came)
                rep = await stubs[1].GetReport(pb.ReportRequest(report=g.report), metadata=md)
                assert (rep.addressed, rep.stored) == (2, 2)
                await ben.recv_type("event")
                await wait_report(h0, g.report, addressed=2, stored=2, delivered=1)

            # counts are in the store: a restarted router serves them unchanged
            c.restart_router(0)
            c.restart_router(1)
            await wait_report(h0, "c-1", addressed=6, stored=4, duplicates=2, delivered=2,
                              acked=1, read=2)
        finally:
            for ch in channels:
                await ch.close()
