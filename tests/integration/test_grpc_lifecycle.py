"""The router's ``Gateway`` calls around their callers and the router's own stop: a send
whose caller goes away while it is being stored is carried through (stored, counted in
its report, a retry with its id is its duplicate), and a router that drains ends a
``SendStream`` with the retryable ``shutting_down`` once the requests it read are
answered, answering a send still in progress at the drain's end ``shutting_down`` too
(docs/http-api.md, "gRPC API").

One real router (:class:`~pushgate.router.node.RouterNode`: Redis directory, SQLite),
in this test's event loop: its group committer is held at a gate to catch a send in
progress."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from grpc import aio

from pushgate.router import wire
from pushgate.router.node import RouterNode
from pushgate.rpc import pushgate_pb2 as pb
from pushgate.rpc import pushgate_pb2_grpc as pb_grpc
from pushgate.settings import Settings
from pushgate.store import NewEvent
from tests.support.waiting import wait_for

KEY = "grpc-lifecycle-key"
MD = (("authorization", f"Bearer {KEY}"),)


class Gate:
    """Holds the router's appends until opened; ``entered`` is set by the first held,
    ``held`` counts them."""

    def __init__(self, node: RouterNode, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open, self.entered = asyncio.Event(), asyncio.Event()
        self.held = 0
        committer = node.router.committer
        append = committer.append

        async def held(events: Sequence[NewEvent], late: Any = None) -> Any:
            self.held += 1
            self.entered.set()
            await self.open.wait()
            return await append(events, late)

        monkeypatch.setattr(committer, "append", held)


@pytest.fixture
async def node(tmp_path: Path, redis_server: str, redis_prefix: str) -> AsyncIterator[RouterNode]:
    router = RouterNode(Settings(
        data_dir=tmp_path / "router", router_listen="127.0.0.1:0", jwt_secret="s" * 32,
        api_keys=[KEY], store_url=f"sqlite+aiosqlite:///{tmp_path}/events.db",
        directory_url=redis_server, directory_prefix=redis_prefix, gc_freeze_interval_s=0))
    await router.start()
    try:
        yield router
    finally:
        if router.server is not None:
            await router.stop(0)


@pytest.fixture
async def stub(node: RouterNode) -> AsyncIterator[pb_grpc.GatewayStub]:
    async with aio.insecure_channel(f"127.0.0.1:{node.port}") as channel:
        yield pb_grpc.GatewayStub(channel)  # type: ignore[no-untyped-call]


async def _report(stub: pb_grpc.GatewayStub, report: str) -> pb.Report:
    """The report once it exists (counts are flushed every half second)."""
    async with asyncio.timeout(10):
        while True:
            try:
                return await stub.GetReport(pb.ReportRequest(report=report), metadata=MD,
                                            timeout=10)
            except aio.AioRpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            await asyncio.sleep(0.05)


def _trailer_error(e: aio.AioRpcError) -> pb.Error:
    trailer = dict(e.trailing_metadata() or ()).get(wire.ERROR_TRAILER)
    assert isinstance(trailer, bytes), f"{e.code()} {e.details()}: no error trailer"
    return pb.Error.FromString(trailer)


async def test_a_send_whose_caller_went_away_is_carried_through(
    node: RouterNode, stub: pb_grpc.GatewayStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(node, monkeypatch)
    call = stub.Send(pb.SendRequest(users=["ann"], id="m-1", body=b'{"n": 1}'), metadata=MD,
                     timeout=10)
    waiting = asyncio.ensure_future(call)
    await asyncio.wait_for(gate.entered.wait(), 10)
    call.cancel()  # the caller gives up while its send is being stored
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.open.set()

    report = await _report(stub, "m-1")
    assert (report.addressed, report.stored, report.duplicates) == (1, 1, 0)
    fetched = await stub.FetchEvents(pb.FetchRequest(user="ann"), metadata=MD, timeout=10)
    assert [(e.seq, e.id, e.body) for e in fetched.events] == [(1, "m-1", b'{"n":1}')]
    again = await stub.Send(pb.SendRequest(users=["ann"], id="m-1", body=b'{"n": 1}'),
                            metadata=MD, timeout=10)
    assert [(r.seq, r.duplicate) for r in again.results] == [(1, True)]


async def test_a_draining_router_ends_a_send_stream_with_shutting_down(
    node: RouterNode, stub: pb_grpc.GatewayStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests: asyncio.Queue[pb.SendRequest | None] = asyncio.Queue()

    async def feed() -> AsyncIterator[pb.SendRequest]:
        while (m := await requests.get()) is not None:
            yield m

    call = stub.SendStream(feed(), metadata=MD, timeout=30)
    requests.put_nowait(pb.SendRequest(users=["ann"], id="m-1", body=b"1", tag=1))
    first = await call.read()
    assert first.tag == 1 and first.results[0].seq == 1

    gate = Gate(node, monkeypatch)
    for tag in range(2, 10):
        requests.put_nowait(pb.SendRequest(users=["ann"], id=f"m-{tag}", body=b"2", tag=tag))
    # all eight read off the stream and being stored (a request the stream had not read
    # when the drain began is "not answered on this stream": the client resends it)
    await wait_for(lambda: gate.held == 8, 10, "the eight sends held at the store")
    stopping = asyncio.create_task(node.stop(grace_s=1.0))  # SIGTERM
    # the sends in progress are answered at the drain's end, then the stream ends: all
    # retryable, with the trailer (not the server's bare "Cancelling all calls")
    answered = [await asyncio.wait_for(call.read(), 10) for _ in range(2, 10)]
    assert sorted((r.tag, r.error.code, r.error.retryable) for r in answered) == [
        (tag, "shutting_down", True) for tag in range(2, 10)]
    with pytest.raises(aio.AioRpcError) as ended:
        await asyncio.wait_for(call.read(), 10)
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    err = _trailer_error(ended.value)
    assert (err.code, err.retryable) == ("shutting_down", True)
    gate.open.set()
    requests.put_nowait(None)
    await asyncio.wait_for(stopping, 10)


async def test_a_send_in_progress_when_the_router_drains_is_answered_with_its_result(
    node: RouterNode, stub: pb_grpc.GatewayStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(node, monkeypatch)
    call = asyncio.ensure_future(stub.Send(
        pb.SendRequest(users=["ann"], id="m-1", body=b"1"), metadata=MD, timeout=10))
    await asyncio.wait_for(gate.entered.wait(), 10)
    stopping = asyncio.create_task(node.stop(grace_s=5.0))  # SIGTERM
    await wait_for(lambda: node.gateway.draining, 10, "the drain")
    gate.open.set()  # the store answers well within the grace period

    reply = await asyncio.wait_for(call, 10)
    assert [(r.seq, r.duplicate) for r in reply.results] == [(1, False)]
    await asyncio.wait_for(stopping, 10)


async def test_a_stalled_store_does_not_hold_the_routers_stop_past_its_grace(
    node: RouterNode, stub: pb_grpc.GatewayStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/cluster.md: a router stopping on SIGTERM exits within shutdown_grace_s. With
    its store stalled (a row lock held from outside, a stopped server) the stop waited
    for the group committer as long as the store stalled (38 s with a 5 s grace), past
    an orchestrator's SIGKILL."""
    committer = node.router.committer
    stalled = asyncio.Event()

    async def append(events: Any) -> Any:
        stalled.set()
        await asyncio.Event().wait()  # the store never answers

    monkeypatch.setattr(committer.store, "append", append)
    call = asyncio.ensure_future(stub.Send(
        pb.SendRequest(users=["ann"], id="m-1", body=b"1"), metadata=MD, timeout=30))
    await asyncio.wait_for(stalled.wait(), 10)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with structlog.testing.capture_logs() as logs:
        await asyncio.wait_for(node.stop(grace_s=2.0), 20)  # SIGTERM
    assert loop.time() - started < 2.0 + 1.5
    with pytest.raises(aio.AioRpcError) as refused:
        await asyncio.wait_for(call, 10)
    assert _trailer_error(refused.value).code == "shutting_down"
    assert any(e["event"].startswith("router stopped without the store's answer")
               for e in logs), logs
