"""S6's load processes: each holds a share of the client sessions (through nginx), sends
client-to-client frames at a fixed offered rate and records what its sessions receive
(latency, duplicates, errors). The parent drives them over pipes (:class:`Workers`)."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import socket
import time
from array import array
from typing import Any

import orjson

from bench.wsload import Stats, WsClient

PAD = "x" * 40


class Rx:
    """Per-worker receive statistics for the current phase."""

    def __init__(self) -> None:
        self.reset("")

    def reset(self, prefix: str) -> None:
        self.prefix = prefix
        self.lat = array("d")
        self.seen: set[str] = set()
        self.dups = 0
        self.errors = 0
        self.error_samples: list[str] = []
        self.closed = 0


class C2CClient(WsClient):
    """A session that records notifications (plain or wrapped by a client send)."""

    rx: Rx

    def _text(self, payload: bytes) -> None:
        now = time.time()
        msg = orjson.loads(payload)
        kind = msg.get("type")
        rx = self.rx
        if kind == "event":
            body = msg.get("body")
            if isinstance(body, dict) and "from" in body:
                body = body.get("body")
            mid = body.get("i") if isinstance(body, dict) else None
            if not isinstance(mid, str) or not mid.startswith(rx.prefix):
                return
            if mid in rx.seen:
                rx.dups += 1
                return
            rx.seen.add(mid)
            rx.lat.append(now - body["t"])
        elif kind == "hello":
            if not self.ready.done():
                self.ready.set_result(None)
        elif kind == "error" or (kind == "reply" and "error" in msg):
            rx.errors += 1
            if len(rx.error_samples) < 5:
                rx.error_samples.append(payload[:200].decode(errors="replace"))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ready.done() and not self.closing:
            self.rx.closed += 1
        super().connection_lost(exc)


async def _worker(pipe: Any) -> None:
    loop = asyncio.get_running_loop()
    rx = Rx()
    conns: dict[str, C2CClient] = {}
    stats_stub = Stats()  # counts closes (a close before hello fails the connect, naming it)

    async def open_one(host: str, port: int, user: str, token: str) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(sock, (host, port))
        path = f"/v1/ws?token={token}"
        def make() -> C2CClient:
            client = C2CClient(stats_stub, host, port, path, user)
            client.rx = rx  # before any frame can arrive
            return client

        _, proto = await loop.create_connection(make, sock=sock)
        await asyncio.wait_for(proto.ready, 30)
        conns[user] = proto

    async def send_phase(pairs: list[tuple[str, str]], rate: float, duration: float,
                         prefix: str) -> int:
        if not pairs or rate <= 0:
            return 0
        frames = [(conns[s], peer) for s, peer in pairs]
        start = time.time() + 0.05
        n, total = 0, int(rate * duration)
        while n < total:
            due = start + n / rate
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            # catch up in bursts when late (a fixed offered rate, not closed-loop)
            while n < total and start + n / rate <= time.time():
                conn, peer = frames[n % len(frames)]
                mid = f"{prefix}{os.getpid()}-{n}"
                conn.send_text(orjson.dumps({"type": "send", "users": [peer], "body": {
                    "i": mid, "t": time.time(), "p": PAD}}).decode())
                n += 1
        return n

    async def _command(cmd: str, arg: Any) -> bool:
        if cmd == "connect":
            sem = asyncio.Semaphore(64)

            async def one(u: str, t: str) -> None:
                async with sem:
                    await open_one(arg["host"], arg["port"], u, t)

            await asyncio.gather(*(one(u, t) for u, t in arg["users"]))
            pipe.send(len(conns))
        elif cmd == "reset":
            rx.reset(arg)
            pipe.send(True)
        elif cmd == "send":
            pipe.send(await send_phase(arg["pairs"], arg["rate"], arg["duration"], arg["prefix"]))
        elif cmd == "collect":
            pipe.send({"lat": rx.lat.tobytes(), "dups": rx.dups, "errors": rx.errors,
                       "error_samples": rx.error_samples, "closed": rx.closed})
        elif cmd == "quit":
            for c in conns.values():
                c.close()
            await asyncio.sleep(0.1)
            pipe.send(True)
            return True
        else:
            raise ValueError(f"unknown command {cmd!r}")
        return False

    while True:
        cmd, arg = await loop.run_in_executor(None, pipe.recv)
        try:
            done = await _command(cmd, arg)
        except Exception as e:  # report to the parent instead of dying silently
            pipe.send(RuntimeError(f"load worker {os.getpid()}: {cmd}: {e!r}"))
            continue
        if done:
            return


def _worker_main(pipe: Any) -> None:
    import uvloop

    uvloop.run(_worker(pipe))


class Workers:
    def __init__(self, n: int) -> None:
        ctx = mp.get_context("spawn")
        self.pipes = []
        self.procs = []
        for _ in range(n):
            a, b = ctx.Pipe()
            p = ctx.Process(target=_worker_main, args=(b,), daemon=True)
            p.start()
            self.pipes.append(a)
            self.procs.append(p)

    async def call(self, i: int, cmd: str, arg: Any = None) -> Any:
        self.pipes[i].send((cmd, arg))
        out = await asyncio.get_running_loop().run_in_executor(None, self.pipes[i].recv)
        if isinstance(out, Exception):
            raise out
        return out

    async def all(self, cmd: str, args: list[Any]) -> list[Any]:
        return await asyncio.gather(*(self.call(i, cmd, a) for i, a in enumerate(args)))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
            p.join(5)
