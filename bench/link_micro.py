"""What a HubLink message costs on its transport: grpc.aio's bidirectional stream (the
``grpc`` transport), the same protobuf messages length-prefixed on a plain asyncio stream
(``tcp``, the yardstick), and on :class:`pushgate.rpc.framed.FramedLink` (``framed``, what
hubs and routers use by default: docs/cluster.md, "HubLink transports").

    .venv/bin/python -m bench.link_micro [--rate 2000] [--seconds 10] [--rounds 2]

Two processes on uvloop, a "router" (server) and a "hub" (client). The hub sends
``HubMessage(sends=SendBatch(1 SendRequest))`` at ``--rate`` per second, paced, one per
message as at a moderate rate in S6; the router answers each with
``RouterMessage(replies=SendReplies(1 SendReply))``. Printed: CPU time of both processes
(utime + stime from ``/proc``) per round trip, i.e. per two messages, for each
transport, ``--rounds`` times alternating. The pacing (a sleep per message) and the
protobuf work are the same on both sides of the comparison, so the difference is the
transport's: grpc.aio hands every message between its poller thread and the event
loop (futex wake-ups, the GIL) and frames it as HTTP/2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from grpc import aio

from pushgate.rpc import pushgate_pb2 as pb
from pushgate.rpc import pushgate_pb2_grpc as pb_grpc
from pushgate.rpc.framed import FramedLink

_LEN = struct.Struct(">I")
MODES = ("grpc", "tcp", "framed")


def _request(tag: int) -> pb.HubMessage:
    return pb.HubMessage(sends=pb.SendBatch(items=[pb.SendRequest(
        users=[f"user-{tag}"], body=b'{"type":"x","i":%d}' % tag, ttl_s=3600, tag=tag)]))


def _reply(msg: pb.HubMessage) -> pb.RouterMessage:
    return pb.RouterMessage(replies=pb.SendReplies(items=[
        pb.SendReply(tag=s.tag, sessions=1,
                     results=[pb.UserResult(user=s.users[0], seq=1, sessions=1)])
        for s in msg.sends.items]))


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the router side ---------------------------------------------------------------------

class _Link(pb_grpc.HubLinkServicer):
    async def Link(self, request_iterator: Any, context: Any) -> None:
        while True:
            msg = await context.read()
            if msg is aio.EOF:
                return
            await context.write(_reply(msg))


async def _serve(mode: str) -> None:
    if mode == "grpc":
        server = aio.server()
        pb_grpc.add_HubLinkServicer_to_server(_Link(), server)  # type: ignore[no-untyped-call]
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(port, flush=True)
        await server.wait_for_termination()
        return

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            try:
                (n,) = _LEN.unpack(await r.readexactly(4))
                msg = pb.HubMessage.FromString(await r.readexactly(n))
            except asyncio.IncompleteReadError:
                return
            out = _reply(msg).SerializeToString()
            w.write(_LEN.pack(len(out)) + out)

    if mode == "framed":
        loop = asyncio.get_running_loop()

        def protocol() -> FramedLink[pb.HubMessage]:
            link = FramedLink(pb.HubMessage.FromString)
            link.set_handler(lambda msg: link.send(_reply(msg)))
            return link

        framed = await loop.create_server(protocol, "127.0.0.1", 0)
        print(framed.sockets[0].getsockname()[1], flush=True)
        await framed.serve_forever()
        return

    tcp = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(tcp.sockets[0].getsockname()[1], flush=True)
    await tcp.serve_forever()


# -- the hub side ------------------------------------------------------------------------

async def _drive(mode: str, port: int, server_pid: int, rate: int, seconds: float) -> float:
    """Round trips at ``rate``/s for ``seconds``; CPU µs of both processes per round trip."""
    n = int(rate * seconds)
    got = 0
    done = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    channel: Any = None
    writer: asyncio.StreamWriter | None = None
    link: FramedLink[pb.RouterMessage] | None = None
    send: Callable[[pb.HubMessage], None]
    if mode == "grpc":
        channel = aio.insecure_channel(f"127.0.0.1:{port}")
        call = pb_grpc.HubLinkStub(channel).Link()  # type: ignore[no-untyped-call]
        await call.write(_request(0))
        await call.read()
        out: asyncio.Queue[pb.HubMessage] = asyncio.Queue()

        async def read_grpc() -> None:
            nonlocal got
            while got < n:
                got += len((await call.read()).replies.items)
            done.set()

        async def write_grpc() -> None:
            while True:
                await call.write(await out.get())

        tasks += [asyncio.create_task(read_grpc()), asyncio.create_task(write_grpc())]
        send = out.put_nowait
    elif mode == "framed":
        def count(msg: pb.RouterMessage) -> None:
            nonlocal got
            got += len(msg.replies.items)
            if got >= n:
                done.set()

        _, link = await asyncio.get_running_loop().create_connection(
            lambda: FramedLink(pb.RouterMessage.FromString), "127.0.0.1", port)
        link.set_handler(count)
        send = link.send
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def read_tcp() -> None:
            nonlocal got
            while got < n:
                (size,) = _LEN.unpack(await reader.readexactly(4))
                got += len(pb.RouterMessage.FromString(await reader.readexactly(size))
                           .replies.items)
            done.set()

        def send_tcp(msg: pb.HubMessage) -> None:
            data = msg.SerializeToString()
            writer.write(_LEN.pack(len(data)) + data)

        send = send_tcp

        tasks.append(asyncio.create_task(read_tcp()))
    try:
        return await _paced(n, rate, send, done, server_pid)
    finally:
        if link is not None:
            link.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if channel is not None:
            await channel.close()
        if writer is not None:
            writer.close()


async def _paced(n: int, rate: int, send: Any, done: asyncio.Event, server_pid: int) -> float:
    me = os.getpid()
    cpu0 = _cpu_s(me) + _cpu_s(server_pid)
    t0 = time.monotonic()
    for i in range(n):
        send(_request(i + 1))
        wait = t0 + (i + 1) / rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
    await asyncio.wait_for(done.wait(), 60)
    cpu1 = _cpu_s(me) + _cpu_s(server_pid)
    return (cpu1 - cpu0) / n * 1e6


def measure(mode: str, rate: int, seconds: float) -> float:
    """Start the router side in a child process, drive it from this one."""
    import uvloop

    child = subprocess.Popen([sys.executable, "-m", "bench.link_micro", "--serve", mode],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        return uvloop.run(_drive(mode, port, child.pid, rate, seconds))
    finally:
        child.terminate()
        child.wait(10)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=int, default=2000, help="round trips per second")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        import uvloop

        uvloop.run(_serve(args.serve))
        return
    for r in range(args.rounds):
        for mode in MODES:
            us = measure(mode, args.rate, args.seconds)
            print(f"round {r + 1} {mode:6}: {us:7.1f} µs CPU per round trip (2 messages, both "
                  f"processes) at {args.rate}/s", flush=True)


if __name__ == "__main__":
    main()
