"""The router's ``Gateway`` gRPC service validates as the HTTP API does (docs/http-api.md,
"gRPC API": "Validation is the HTTP API's"): every input the HTTP API refuses, sent the
same over gRPC, is ``INVALID_ARGUMENT`` with the same error (code, message, field,
retryable) in the ``pushgate-error-bin`` trailer.

One real router (:class:`~pushgate.router.node.RouterNode`: Redis directory, SQLite)
serves the gRPC calls; the HTTP answers come from a hub of that router (its Starlette
app, in this test's event loop), so both sides are the same cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pytest
from grpc import aio

from pushgate.hub.app import create_app
from pushgate.hub.node import HubNode
from pushgate.models import MAX_READ_ITEMS
from pushgate.router import wire
from pushgate.router.base import MAX_REPORTS_LIMIT
from pushgate.router.node import RouterNode
from pushgate.rpc import pushgate_pb2 as pb
from pushgate.rpc import pushgate_pb2_grpc as pb_grpc
from pushgate.settings import Settings

KEY = "grpc-validation-key"
FETCH_MAX = 50  # under the default limit of 100: a fetch without a limit gets 50
MD = (("authorization", f"Bearer {KEY}"),)


@dataclass
class Gateways:
    grpc: pb_grpc.GatewayStub
    http: httpx.AsyncClient
    router: RouterNode
    channel: aio.Channel
    hub: HubNode


@pytest.fixture
async def gw(tmp_path: Path, redis_server: str, redis_prefix: str) -> AsyncIterator[Gateways]:
    common: dict[str, Any] = {"jwt_secret": "s" * 32, "api_keys": [KEY],
                              "gc_freeze_interval_s": 0, "fetch_max_limit": FETCH_MAX}
    router = RouterNode(Settings(
        data_dir=tmp_path / "router", router_listen="127.0.0.1:0",
        store_url=f"sqlite+aiosqlite:///{tmp_path}/events.db", directory_url=redis_server,
        directory_prefix=redis_prefix, **common))
    await router.start()
    app = create_app(Settings(
        data_dir=tmp_path / "hub", routers=[f"127.0.0.1:{router.port}"], **common))
    hub: HubNode = app.state.node
    await hub.start()
    try:
        assert hub.routers is not None
        await asyncio.wait_for(hub.routers.any_up.wait(), 10)
        async with aio.insecure_channel(f"127.0.0.1:{router.port}") as channel, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub",
                                  headers={"Authorization": f"Bearer {KEY}"},
                                  timeout=10) as http:
            yield Gateways(pb_grpc.GatewayStub(channel),  # type: ignore[no-untyped-call]
                           http, router, channel, hub)
    finally:
        await hub.stop()
        await router.stop(0)


def _error(m: pb.Error) -> dict[str, Any]:
    """The trailer's error in the shape of the HTTP error body."""
    return {"code": m.code, "message": m.message, "field": m.field or None,
            "retryable": m.retryable}


async def grpc_refusal(call: Awaitable[Any]) -> dict[str, Any]:
    """The error of a call that must fail with ``INVALID_ARGUMENT``."""
    with pytest.raises(aio.AioRpcError) as err:
        await call
    e = err.value
    trailer = dict(e.trailing_metadata() or ()).get(wire.ERROR_TRAILER)
    assert isinstance(trailer, bytes), f"{e.code()} {e.details()}: no error trailer"
    found = _error(pb.Error.FromString(trailer))
    assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, found["message"])
    return found


def http_refusal(r: httpx.Response) -> dict[str, Any]:
    """The error of an HTTP answer that must be 400."""
    assert r.status_code == 400, r.text
    body = r.json()["error"]
    return {"code": body["code"], "message": body["message"], "field": body.get("field"),
            "retryable": body["retryable"]}


async def _send(gw: Gateways, user: str, n: int = 1) -> None:
    for i in range(n):
        await gw.grpc.Send(pb.SendRequest(users=[user], body=orjson.dumps({"n": i})),
                           metadata=MD, timeout=10)


# -- Send / SendStream --------------------------------------------------------------------


async def test_a_send_without_body_bytes_is_refused_as_a_body_without_body(gw: Gateways) -> None:
    http = http_refusal(await gw.http.post("/v1/notifications", json={"users": ["ann"]}))
    assert http == {"code": "invalid_request", "message": "'body' is required",
                    "field": "body", "retryable": False}
    assert await grpc_refusal(gw.grpc.Send(pb.SendRequest(users=["ann"]), metadata=MD,
                                           timeout=10)) == http

    async def one() -> AsyncIterator[pb.SendRequest]:
        yield pb.SendRequest(users=["ann"], tag=7)

    replies = [r async for r in gw.grpc.SendStream(one(), metadata=MD, timeout=10)]
    assert [(r.tag, _error(r.error)) for r in replies] == [(7, http)]
    # nothing was stored: ann has no inbox
    r = await gw.http.get("/v1/users/ann/events")
    assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_user")


async def test_a_json_null_body_is_still_a_body(gw: Gateways) -> None:
    reply = await gw.grpc.Send(pb.SendRequest(users=["ann"], body=b"null"), metadata=MD,
                               timeout=10)
    assert reply.results[0].seq == 1
    fetched = await gw.grpc.FetchEvents(pb.FetchRequest(user="ann", limit=10), metadata=MD,
                                        timeout=10)
    assert [e.body for e in fetched.events] == [b"null"]


# -- FetchEvents --------------------------------------------------------------------------


@pytest.mark.parametrize(("after", "limit", "query"), [
    (-1, 0, "after=-1"),
    (-(2**63), 0, f"after={-(2**63)}"),
    (0, -1, "limit=-1"),
    (0, FETCH_MAX + 1, f"limit={FETCH_MAX + 1}"),
    (-1, -1, "after=-1&limit=-1"),  # after is checked first
])
async def test_fetch_bounds_are_the_http_ones(gw: Gateways, after: int, limit: int,
                                              query: str) -> None:
    await _send(gw, "ann")
    http = http_refusal(await gw.http.get(f"/v1/users/ann/events?{query}"))
    assert http["field"] == query.split("=")[0]
    assert await grpc_refusal(gw.grpc.FetchEvents(
        pb.FetchRequest(user="ann", after=after, limit=limit), metadata=MD, timeout=10)) == http


async def test_a_fetch_without_limit_gets_the_http_default(gw: Gateways) -> None:
    await _send(gw, "ann", FETCH_MAX + 1)
    r = await gw.http.get("/v1/users/ann/events")
    assert r.status_code == 200
    reply = await gw.grpc.FetchEvents(pb.FetchRequest(user="ann"), metadata=MD, timeout=10)
    assert [e.seq for e in reply.events] == [e["seq"] for e in r.json()["events"]] == \
        list(range(1, FETCH_MAX + 1))
    assert reply.more and r.json()["more"]


# -- MarkRead -----------------------------------------------------------------------------


def _mark_read(body: dict[str, Any]) -> pb.MarkReadRequest:
    return pb.MarkReadRequest(user="ann", seqs=body.get("seqs", []), ranges=[
        pb.Range(first=a, last=b) for a, b in body.get("ranges", [])])


@pytest.mark.parametrize("body", [
    {"seqs": [0]},
    {"seqs": [-5]},
    {"seqs": [1, 0]},
    {"ranges": [[0, 3]]},
    {"ranges": [[-3, 2]]},
    {"ranges": [[5, 2]]},
    {"seqs": [1] * (MAX_READ_ITEMS + 1)},
    {"ranges": [[1, 1]] * (MAX_READ_ITEMS + 1)},
    {"seqs": [1] * (MAX_READ_ITEMS // 2), "ranges": [[1, 2]] * (MAX_READ_ITEMS // 2 + 1)},
    {},
], ids=["seq-0", "seq-negative", "seq-0-second", "range-from-0", "range-negative",
        "range-inverted", "too-many-seqs", "too-many-ranges", "too-many-together", "nothing"])
async def test_read_marks_are_refused_as_over_http(gw: Gateways, body: dict[str, Any]) -> None:
    await _send(gw, "ann", 3)
    before = await gw.grpc.ReadState(pb.UserRequest(user="ann"), metadata=MD, timeout=10)
    http = http_refusal(await gw.http.post("/v1/users/ann/read", json=body))
    assert http["field"] in ("seqs", "ranges")
    assert await grpc_refusal(gw.grpc.MarkRead(_mark_read(body), metadata=MD,
                                               timeout=10)) == http
    after = await gw.grpc.ReadState(pb.UserRequest(user="ann"), metadata=MD, timeout=10)
    assert after == before  # nothing marked (seq 0 not in the bitmap)


async def test_valid_read_marks_still_work(gw: Gateways) -> None:
    await _send(gw, "ann", 5)
    rs = await gw.grpc.MarkRead(_mark_read({"seqs": [1], "ranges": [[3, 4]]}), metadata=MD,
                                timeout=10)
    assert (rs.head, rs.unread) == (5, 2)
    r = await gw.http.post("/v1/users/ann/read", json={"seqs": [5]})
    assert r.json() == {"head": 5, "unread": 1, "live": 5}


# -- devices ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    {"platform": "x", "token": "t", "app": "a"},
    {"platform": "", "token": "t", "app": "a"},
    {"platform": "fcm", "token": "", "app": "a"},
    {"platform": "fcm", "token": "t", "app": ""},
], ids=["platform-unknown", "platform-empty", "token-empty", "app-empty"])
@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_device_calls_are_refused_as_over_http(gw: Gateways, body: dict[str, str],
                                                     method: str) -> None:
    http = http_refusal(await gw.http.request(method, "/v1/users/ann/devices", json=body))
    assert http["field"] in body
    call = gw.grpc.RegisterDevice if method == "PUT" else gw.grpc.RemoveDevice
    assert await grpc_refusal(call(pb.DeviceRequest(user="ann", **body), metadata=MD,
                                   timeout=10)) == http


async def test_valid_device_calls_still_work(gw: Gateways) -> None:
    d = await gw.grpc.RegisterDevice(pb.DeviceRequest(user="ann", app="a", platform="fcm",
                                                      token="tok"), metadata=MD, timeout=10)
    assert (d.user, d.app, d.platform, d.token) == ("ann", "a", "fcm", "tok")
    r = await gw.http.get("/v1/users/ann/devices")
    assert [x["token"] for x in r.json()["devices"]] == ["tok"]
    removed = await gw.grpc.RemoveDevice(pb.DeviceRequest(user="ann", app="a", platform="fcm",
                                                          token="tok"), metadata=MD, timeout=10)
    assert removed.removed


# -- reports ------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [-1, MAX_REPORTS_LIMIT + 1])
async def test_report_list_bounds_are_the_http_ones(gw: Gateways, limit: int) -> None:
    http = http_refusal(await gw.http.get(f"/v1/notifications?limit={limit}"))
    assert http["field"] == "limit"
    assert await grpc_refusal(gw.grpc.ListReports(pb.ListReportsRequest(limit=limit),
                                                  metadata=MD, timeout=10)) == http


async def test_a_report_list_without_limit_still_works(gw: Gateways) -> None:
    reply = await gw.grpc.ListReports(pb.ListReportsRequest(), metadata=MD, timeout=10)
    r = await gw.http.get("/v1/notifications")
    assert r.status_code == 200 and len(reply.reports) == len(r.json()["reports"])


# -- bytes that are not a message -----------------------------------------------------------


def _raw(gw: Gateways, method: str) -> Any:
    """A call of ``method`` that sends the bytes it is given as they are."""
    return gw.channel.unary_unary(f"/pushgate.v1.Gateway/{method}",
                               request_serializer=lambda b: b,
                               response_deserializer=lambda b: b)


BAD_UTF8 = pb.SendRequest(users=["ab"], body=b"1").SerializeToString().replace(b"ab", b"\xff\xfe")


@pytest.mark.parametrize("data", [b"\x0a\x05ab", BAD_UTF8], ids=["truncated", "bad-utf8"])
async def test_bytes_that_are_not_a_request_are_an_invalid_request(gw: Gateways,
                                                                   data: bytes) -> None:
    # not gRPC's UNKNOWN (and a traceback in the router's log): the HTTP API's malformed
    # body, after the key was checked
    with pytest.raises(aio.AioRpcError) as no_key:
        await _raw(gw, "Send")(data, timeout=10)
    assert no_key.value.code() == grpc.StatusCode.UNAUTHENTICATED
    found = await grpc_refusal(_raw(gw, "Send")(data, metadata=MD, timeout=10))
    assert found["code"] == "invalid_request" and not found["retryable"]
    assert found["message"].startswith("the request is not a valid pushgate.v1.SendRequest")
    found = await grpc_refusal(_raw(gw, "FetchEvents")(data, metadata=MD, timeout=10))
    assert found["message"].startswith("the request is not a valid pushgate.v1.FetchRequest")


async def test_a_stream_with_bytes_that_are_not_a_request_ends_after_the_valid_ones(
    gw: Gateways,
) -> None:
    stream = gw.channel.stream_stream("/pushgate.v1.Gateway/SendStream",
                                   request_serializer=lambda b: b,
                                   response_deserializer=pb.SendReply.FromString)

    async def requests() -> AsyncIterator[bytes]:
        yield pb.SendRequest(users=["ann"], body=b"1", tag=1).SerializeToString()
        yield b"\x0a\x05ab"

    call = stream(requests(), metadata=MD, timeout=10)
    replies = []
    with pytest.raises(aio.AioRpcError) as err:
        async for r in call:
            replies.append(r)
    assert [(r.tag, r.results[0].seq) for r in replies] == [(1, 1)]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    trailer = dict(err.value.trailing_metadata() or ()).get(wire.ERROR_TRAILER)
    assert isinstance(trailer, bytes) and pb.Error.FromString(trailer).code == "invalid_request"


async def test_errors_of_stream_requests_are_counted_as_those_of_sends(gw: Gateways) -> None:
    def refused() -> float:
        return gw.router.metrics.registry.get_sample_value(
            "pushgate_errors_total", {"code": "invalid_request"}) or 0.0

    before = refused()
    await grpc_refusal(gw.grpc.Send(pb.SendRequest(users=["ann"]), metadata=MD, timeout=10))
    assert refused() == before + 1

    async def requests() -> AsyncIterator[pb.SendRequest]:
        for tag in range(3):
            yield pb.SendRequest(users=["ann"], tag=tag)  # no body

    replies = [r async for r in gw.grpc.SendStream(requests(), metadata=MD, timeout=10)]
    assert sorted(r.error.code for r in replies) == ["invalid_request"] * 3
    assert refused() == before + 4


async def test_a_device_call_without_app_is_the_default_app_as_over_http(gw: Gateways) -> None:
    r = await gw.http.put("/v1/users/ann/devices", json={"platform": "fcm", "token": "t1"})
    assert r.status_code == 200 and r.json()["app"] == "default"
    d = await gw.grpc.RegisterDevice(pb.DeviceRequest(user="bob", platform="fcm", token="t2"),
                                     metadata=MD, timeout=10)
    assert (d.user, d.app) == ("bob", "default")
    removed = await gw.grpc.RemoveDevice(pb.DeviceRequest(user="bob", platform="fcm",
                                                          token="t2"), metadata=MD, timeout=10)
    assert removed.removed


async def test_an_error_a_hub_answers_is_counted_once_in_the_cluster(gw: Gateways) -> None:
    # the hub counts what it answers its client; the router, only its own gRPC callers'
    # (a cluster-wide sum of pushgate_errors_total is what the clients saw)
    def counted(registry: Any, code: str) -> float:
        return registry.get_sample_value("pushgate_errors_total", {"code": code}) or 0.0

    hub_registry = gw.hub.metrics.registry
    router_registry = gw.router.metrics.registry
    before = {c: (counted(hub_registry, c), counted(router_registry, c))
              for c in ("ack_timeout", "unknown_user")}
    r = await gw.http.post("/v1/notifications", json={
        "users": ["nobody-online"], "body": 1, "ack": True, "ack_timeout_ms": 1})
    assert r.status_code == 408, r.text
    r = await gw.http.get("/v1/users/never-sent-to/events")  # a Gateway call of the hub
    assert r.status_code == 404, r.text
    for code in ("ack_timeout", "unknown_user"):
        hub_before, router_before = before[code]
        assert (counted(hub_registry, code), counted(router_registry, code)) == (
            hub_before + 1, router_before), code


async def test_a_send_stream_faster_than_the_store_is_slowed_not_refused(
        tmp_path: Path, redis_server: str, redis_prefix: str) -> None:
    """A campaign written onto a ``SendStream`` as fast as the client can: the router
    reads a request only once the stream's sends in flight leave room (a quarter of
    ``commit_max_pending``), so HTTP/2 flow control holds the sender back and no part is
    refused ``overloaded`` (all were read at once: most parts got 503)."""
    router = RouterNode(Settings(
        data_dir=tmp_path / "router", router_listen="127.0.0.1:0", jwt_secret="s" * 32,
        api_keys=[KEY], gc_freeze_interval_s=0, commit_max_pending=4000,
        store_url=f"sqlite+aiosqlite:///{tmp_path}/events.db", directory_url=redis_server,
        directory_prefix=redis_prefix))
    await router.start()
    try:
        assert router.stream_max_events == 1000
        parts = 24

        async def requests() -> AsyncIterator[pb.SendRequest]:
            for part in range(parts):
                yield pb.SendRequest(users=[f"u{part}-{i}" for i in range(1000)], body=b"1",
                                     id="campaign", tag=part)

        async with aio.insecure_channel(f"127.0.0.1:{router.port}") as channel:
            stub = pb_grpc.GatewayStub(channel)  # type: ignore[no-untyped-call]
            replies = [r async for r in stub.SendStream(requests(), metadata=MD, timeout=60)]
        assert [r.error.code for r in replies if r.HasField("error")] == []
        assert sorted(r.tag for r in replies) == list(range(parts))
        assert sum(len(r.results) for r in replies) == parts * 1000
    finally:
        await router.stop(0)
