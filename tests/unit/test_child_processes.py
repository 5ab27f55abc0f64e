"""deploy/local/processes.py: children started by a process that runs gRPC (the launcher,
the tests) reach their exec. With the parent-death signal set by a ``preexec_fn``,
``subprocess`` forked (no vfork), gRPC 1.81+'s fork handler restarted its poller in the
child, ``close_fds`` closed the poller's epoll descriptor, and the child aborted before
its exec ("epoll_wait error: Bad file descriptor", exit -6; grpc/grpc#43055): about one
start in 150 here."""

from __future__ import annotations

from pathlib import Path

from grpc import aio

from deploy.local.processes import Child

STARTS = 300


async def test_children_started_while_grpc_runs_here_all_reach_their_exec(
        tmp_path: Path) -> None:
    server = aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await channel.channel_ready()  # gRPC's poller threads are running
            codes = []
            for i in range(STARTS):
                child = Child(f"true-{i}", ["/bin/true"], tmp_path / "true.log")
                child.start()
                codes.append(child.stop(None, timeout=10))  # (it exits by itself)
    finally:
        await server.stop(0)
    assert [c for c in codes if c != 0] == []
