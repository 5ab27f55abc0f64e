"""HubLink's framed transport (docs/cluster.md, "HubLink transports"), from the wire: a
real router (:class:`~pushgate.router.node.RouterNode`, Redis directory, SQLite) and raw
TCP clients that speak the framing themselves — 4-byte big-endian length, then the
protobuf message — as a hub, a stranger or a broken peer would."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc import aio

from pushgate.hub.node import HubNode
from pushgate.router.node import RouterNode
from pushgate.rpc import pushgate_pb2 as pb
from pushgate.rpc import pushgate_pb2_grpc as pb_grpc
from pushgate.rpc.framed import MAX_FRAME, FramedLink
from pushgate.settings import Settings
from tests.support.waiting import wait_for

KEY = "framed-key"
TTL = 1.0  # hub_heartbeat_ttl_s: also how long the router waits for a first Hello


def router_settings(path: Path, redis_server: str, redis_prefix: str) -> Settings:
    return Settings(  # type: ignore[call-arg]
        jwt_secret="s" * 32, api_keys=[KEY], data_dir=path, router_listen="127.0.0.1:0",
        store_url=f"sqlite+aiosqlite:///{path}/events.db", directory_url=redis_server,
        directory_prefix=redis_prefix, hub_heartbeat_ttl_s=TTL, gc_freeze_interval_s=0)


@contextlib.asynccontextmanager
async def linked_hub(path: Path, router: RouterNode) -> AsyncIterator[HubNode]:
    """A hub of ``router``, once its HubLink is up."""
    node = HubNode(Settings(  # type: ignore[call-arg]
        jwt_secret="s" * 32, api_keys=[KEY], data_dir=path, gc_freeze_interval_s=0,
        routers=[f"127.0.0.1:{router.port}"], hub_heartbeat_ttl_s=TTL))
    await node.start()
    try:
        assert node.routers is not None
        await asyncio.wait_for(node.routers.any_up.wait(), 10)
        yield node
    finally:
        await node.stop()


@pytest.fixture
async def router(tmp_path: Path, redis_server: str, redis_prefix: str
                 ) -> AsyncIterator[RouterNode]:
    node = RouterNode(router_settings(tmp_path, redis_server, redis_prefix))
    await node.start()
    try:
        yield node
    finally:
        await node.stop(0)


def frame(msg: pb.HubMessage) -> bytes:
    data = msg.SerializeToString()
    return struct.pack(">I", len(data)) + data


def hello(hub: str, authorization: str | None = f"Bearer {KEY}") -> pb.HubMessage:
    return pb.HubMessage(hello=pb.Hello(hub_id=hub, authorization=authorization or ""))


async def read_frame(reader: asyncio.StreamReader) -> pb.RouterMessage | None:
    """The next message, or None at the router's end of the connection."""
    try:
        (n,) = struct.unpack(">I", await reader.readexactly(4))
        return pb.RouterMessage.FromString(await reader.readexactly(n))
    except (asyncio.IncompleteReadError, ConnectionResetError):
        return None


async def connect(router: RouterNode) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert router.framed_port
    return await asyncio.open_connection("127.0.0.1", router.framed_port)


async def test_the_router_names_its_framed_port_over_grpc_to_holders_of_the_key(
        router: RouterNode) -> None:
    async with aio.insecure_channel(f"127.0.0.1:{router.port}") as channel:
        stub = pb_grpc.HubLinkStub(channel)  # type: ignore[no-untyped-call]
        reply = await stub.Transport(pb.TransportRequest(),
                                     metadata=(("authorization", f"Bearer {KEY}"),))
        assert reply.framed_port == router.framed_port != router.port
        with pytest.raises(aio.AioRpcError) as err:
            await stub.Transport(pb.TransportRequest(),
                                 metadata=(("authorization", "Bearer nope"),))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_hub_links_and_its_sends_are_answered_whatever_the_reads_cut(
        router: RouterNode) -> None:
    reader, writer = await connect(router)
    try:
        writer.write(frame(hello("hub-a")))
        first = await asyncio.wait_for(read_frame(reader), 5)
        assert first is not None and first.WhichOneof("kind") == "heartbeat"
        await wait_for(lambda: "hub-a" in router.hubs.hubs, 5, "hub-a linked")

        # three sends in one message, written a byte at a time; then two messages in one
        # write: every message is taken whole, in order
        batch = frame(pb.HubMessage(sends=pb.SendBatch(items=[
            pb.SendRequest(users=[f"u{i}"], body=b'{"n":1}', ttl_s=60, tag=i)
            for i in (1, 2, 3)])))
        for i in range(len(batch)):
            writer.write(batch[i:i + 1])
            await writer.drain()
        writer.write(frame(pb.HubMessage(sends=pb.SendBatch(items=[pb.SendRequest(
            users=["u4"], body=b"{}", ttl_s=60, tag=4)]))) +
            frame(pb.HubMessage(sends=pb.SendBatch(items=[pb.SendRequest(
                users=["u4"], body=b"{}", ttl_s=60, tag=5)]))))
        replies: dict[int, pb.SendReply] = {}
        async with asyncio.timeout(10):
            while len(replies) < 5:
                msg = await read_frame(reader)
                assert msg is not None
                if msg.WhichOneof("kind") == "replies":
                    replies.update((r.tag, r) for r in msg.replies.items)
        assert {t: [(u.user, u.seq) for u in r.results] for t, r in replies.items()} == {
            1: [("u1", 1)], 2: [("u2", 1)], 3: [("u3", 1)], 4: [("u4", 1)], 5: [("u4", 2)]}
        assert not any(r.HasField("error") for r in replies.values())
    finally:
        writer.close()
    await wait_for(lambda: "hub-a" not in router.hubs.hubs, 5, "hub-a unlinked at EOF")


@pytest.mark.parametrize(("first", "message"), [
    (hello("hub-x", "Bearer wrong"), "API key is not valid"),
    (hello("hub-x", None), "API key missing: send 'Authorization: Bearer <key>'"),
    (pb.HubMessage(heartbeat=pb.Heartbeat()), "a HubLink connection starts with Hello"),
])
async def test_a_first_message_that_is_not_an_accepted_hello_is_refused_and_closed(
        router: RouterNode, first: pb.HubMessage, message: str) -> None:
    reader, writer = await connect(router)
    try:
        writer.write(frame(first))
        refused = await asyncio.wait_for(read_frame(reader), 5)
        assert refused is not None and refused.WhichOneof("kind") == "refused"
        assert refused.refused.message == message
        assert refused.refused.code == ("internal" if "Hello" in message else "unauthorized")
        assert await asyncio.wait_for(read_frame(reader), 5) is None  # then closed
        assert "hub-x" not in router.hubs.hubs
    finally:
        writer.close()


async def test_silence_garbage_and_oversize_frames_are_cut_without_linking(
        router: RouterNode) -> None:
    silent = await connect(router)
    oversize = await connect(router)
    garbage = await connect(router)
    try:
        oversize[1].write(struct.pack(">I", MAX_FRAME + 1))
        garbage[1].write(struct.pack(">I", 3) + b"\xff\xff\xff")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for reader, _ in (oversize, garbage):
            assert await asyncio.wait_for(read_frame(reader), 5) is None
        assert await asyncio.wait_for(read_frame(silent[0]), TTL + 5) is None
        assert loop.time() - t0 >= TTL * 0.9  # the silent one waited for its Hello
        assert router.hubs.hubs == {}
    finally:
        for _, writer in (silent, oversize, garbage):
            writer.close()


async def test_a_hub_that_cannot_reach_the_framed_port_links_over_grpc(
        router: RouterNode, tmp_path: Path) -> None:
    """A firewall or a Service that passes only the gRPC port: the router names its
    framed port, connecting to it fails, the hub links over gRPC's stream instead."""
    assert router.framed is not None
    router.framed.stop_listening()  # Transport still names the port; connects are refused
    async with linked_hub(tmp_path / "hub", router) as node:
        assert node.routers is not None and node.routers.conns[0].transport == "grpc"
        assert list(router.hubs.hubs) == [node.hub_id]


async def test_a_hub_links_over_grpc_to_a_router_that_does_not_know_transport(
        tmp_path: Path, redis_server: str, redis_prefix: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A router of an older release (rolling upgrade): ``HubLink.Transport`` answers
    UNIMPLEMENTED, as gRPC's generated base class does."""
    from pushgate.router.servicers import HubLinkService

    monkeypatch.setattr(HubLinkService, "Transport", pb_grpc.HubLinkServicer.Transport)
    # its framed listener runs: only Transport is missing
    old = RouterNode(router_settings(tmp_path / "router", redis_server, redis_prefix))
    await old.start()
    try:
        async with linked_hub(tmp_path / "hub", old) as node:
            assert node.routers is not None and node.routers.conns[0].transport == "grpc"
    finally:
        await old.stop(0)


async def test_a_peer_that_stops_reading_is_cut_at_the_buffer_bound() -> None:
    """The writer's side: what waits for a peer that takes nothing is bounded."""
    accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def hold(_: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.put_nowait(w)  # never reads

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    _, link = await loop.create_connection(
        lambda: FramedLink(pb.RouterMessage.FromString, max_buffered=1 << 20), "127.0.0.1", port)
    peer = await accepted.get()
    try:
        big = pb.HubMessage(sends=pb.SendBatch(items=[pb.SendRequest(body=b"x" * 65536)]))
        for _ in range(200):  # 13 MB: far over what the socket buffers and the bound hold
            link.send(big)
            if link.lost.done():
                break
        assert link.lost.done()
        with pytest.raises(ConnectionError, match="took no data"):
            link.lost.result()
    finally:
        peer.close()
        server.close()
        await server.wait_closed()
