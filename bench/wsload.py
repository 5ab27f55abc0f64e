"""Websocket load processes: each holds many client sessions and measures deliveries.

The client is a minimal websocket implementation on ``asyncio.Protocol`` (uvloop):
handshake, unmasked server frames parsed in ``data_received``, pongs to server pings,
close handshake. It costs a few µs per received frame, so that one load core can keep
up with a server core (the ``websockets`` library client costs several times more per
frame and would make the load side the bottleneck in the fan-out scenario).

Every text frame is decoded; notification bodies carry ``i`` (message id) and ``t``
(send time, ``time.time()``). The process records per-message latency
(receive time - ``t``), counts per message id, and duplicates per session. How a
target frames them (and when a session counts as open) is its ``ClientSpec.wire``:
``json`` (pushgate, the baseline: a hello frame, then JSON frames), ``raw`` (nchan: open
at the 101, every frame is a body), ``socketio`` (:func:`on_sio_text`).

The parent drives workers through :class:`LoadWorkers` (one pipe per process).
"""

from __future__ import annotations

import asyncio
import base64
import multiprocessing as mp
import os
import resource
import socket
import time
from array import array
from typing import Any

import orjson

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_loads = orjson.loads
_now = time.time


class Stats:
    def __init__(self) -> None:
        self.connected = 0
        self.failed = 0
        self.closed = 0
        self.close_samples: list[str] = []
        self.fail_samples: list[str] = []
        self.connect_done = False
        self.reset("")

    def reset(self, prefix: str) -> None:
        self.prefix = prefix
        self.lat = array("d")
        self.rx = array("d")  # receive time of each counted delivery (throughput plot)
        self.per_id: dict[str, list[float]] = {}  # id -> [count, max latency]
        self.received = 0
        self.dups = 0
        self.stray = 0
        self.other = 0
        self.first_rx = 0.0
        self.last_rx = 0.0

    def record(self, conn: WsClient, body: Any, now: float) -> None:
        try:
            mid = body["i"]
            lat = now - body["t"]
        except (TypeError, KeyError):
            self.other += 1
            return
        if not mid.startswith(self.prefix):
            self.stray += 1
            return
        seen = conn.seen
        if mid in seen:
            self.dups += 1
            return
        seen.add(mid)
        self.received += 1
        self.lat.append(lat)
        self.rx.append(now)
        if not self.first_rx:
            self.first_rx = now
        self.last_rx = now
        e = self.per_id.get(mid)
        if e is None:
            self.per_id[mid] = [1, lat]
        else:
            e[0] += 1
            if lat > e[1]:
                e[1] = lat


def on_text(conn: Any, payload: bytes | str) -> None:
    """Handle one text frame of a session (``conn`` has ``stats``, ``seen``, ``ready``)."""
    now = _now()
    try:
        msg = _loads(payload)
    except orjson.JSONDecodeError:
        conn.stats.other += 1
        return
    kind = msg.get("type") if isinstance(msg, dict) else None
    if kind == "event":
        conn.stats.record(conn, msg.get("body"), now)
    elif kind is None:
        conn.stats.record(conn, msg, now)
    elif kind == "hello":
        if not conn.ready.done():
            conn.ready.set_result(None)
    else:
        conn.stats.other += 1


def on_sio_text(conn: Any, payload: bytes | str) -> None:
    """A text frame of a Socket.IO session (engine.io v4 packets): ``0{…}`` open →
    answer ``40`` (Socket.IO connect); ``40{"sid":…}`` → the session is open;
    ``42["m",body]`` → a delivery; ``2`` (engine.io ping) → answer ``3``."""
    now = _now()
    if isinstance(payload, str):  # the websockets library client gives str
        payload = payload.encode()
    head = payload[:2]
    if head == b"42":
        try:
            msg = _loads(payload[2:])
        except orjson.JSONDecodeError:
            conn.stats.other += 1
            return
        conn.stats.record(conn, msg[1] if isinstance(msg, list) and len(msg) > 1 else None,
                          now)
    elif payload == b"2":
        conn.send_text("3")
    elif head == b"40":
        if not conn.ready.done():
            conn.ready.set_result(None)
    elif head[:1] == b"0":
        conn.send_text("40")
    else:
        conn.stats.other += 1


TEXT_HANDLERS = {"json": on_text, "raw": on_text, "socketio": on_sio_text}


class WsClient(asyncio.Protocol):
    """One websocket session (client side)."""

    __slots__ = (
        "buf",
        "closing",
        "frag",
        "handler",
        "handshaken",
        "ready",
        "request",
        "seen",
        "stats",
        "transport",
        "user",
        "wire",
    )

    def __init__(self, stats: Stats, host: str, port: int, path: str, user: str,
                 wire: str = "json") -> None:
        """``wire``: the target's framing (:attr:`bench.targets.ClientSpec.wire`)."""
        self.stats = stats
        self.wire = wire
        self.handler = TEXT_HANDLERS[wire]
        self.user = user
        key = base64.b64encode(os.urandom(16)).decode()
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                        f"Sec-WebSocket-Version: 13\r\n\r\n").encode()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.handshaken = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.seen: set[str] = set()
        self.frag: bytearray | None = None
        self.closing = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost before hello: {exc}"))
        elif not self.closing:
            self.stats.closed += 1
            if len(self.stats.close_samples) < 5:
                self.stats.close_samples.append(f"{self.user}: connection lost ({exc})")

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.handshaken:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:buf.find(b"\r\n")])
            if b" 101 " not in status + b" ":
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(
                        f"handshake refused: {bytes(buf[:200])!r}"))
                self.transport.close()  # type: ignore[union-attr]
                return
            self.handshaken = True
            del buf[:end + 4]
            if self.wire == "raw" and not self.ready.done():  # no hello: open at the 101
                self.ready.set_result(None)
        n = len(buf)
        pos = 0
        while n - pos >= 2:
            b0 = buf[pos]
            ln = buf[pos + 1] & 0x7F
            hdr = 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln = int.from_bytes(buf[pos + 2:pos + 4], "big")
                hdr = 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln = int.from_bytes(buf[pos + 2:pos + 10], "big")
                hdr = 10
            if n - pos < hdr + ln:
                break
            payload = bytes(buf[pos + hdr:pos + hdr + ln])
            pos += hdr + ln
            self._frame(b0 & 0x80, b0 & 0x0F, payload)
        if pos:
            del buf[:pos]

    # -- frames
    def _frame(self, fin: int, op: int, payload: bytes) -> None:
        if op == 0:  # continuation
            if self.frag is None:
                return
            self.frag += payload
            if fin:
                payload, self.frag = bytes(self.frag), None
                self._text(payload)
        elif op == 1:
            if fin:
                self._text(payload)
            else:
                self.frag = bytearray(payload)
        elif op == 9:  # ping -> pong
            self._send(0xA, payload)
        elif op == 8:  # close
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if not self.closing:
                self.stats.closed += 1
                if len(self.stats.close_samples) < 5:
                    self.stats.close_samples.append(
                        f"{self.user}: close {code} {payload[2:].decode(errors='replace')}")
                self.closing = True
                self._send(0x8, payload[:2])
            if not self.ready.done():
                self.ready.set_exception(ConnectionError(f"closed before hello: {code} "
                                                         f"{payload[2:]!r}"))
            self.transport.close()  # type: ignore[union-attr]

    def _text(self, payload: bytes) -> None:
        self.handler(self, payload)

    def _send(self, op: int, payload: bytes) -> None:
        # masked with an all-zero key (valid; the payload is unchanged)
        ln = len(payload)
        head = bytes((0x80 | op, 0x80 | ln)) if ln < 126 else \
            bytes((0x80 | op, 0x80 | 126)) + ln.to_bytes(2, "big")
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(head + b"\0\0\0\0" + payload)

    def send_text(self, text: str) -> None:
        self._send(0x1, text.encode())

    def close(self) -> None:
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self._send(0x8, (1000).to_bytes(2, "big"))
            self.transport.close()


class LibClient:
    """The same session on the ``websockets`` library's asyncio client (``--ws-client
    websockets``): several times the load-side CPU per frame; for cross-checks."""

    def __init__(self, stats: Stats, user: str, wire: str = "json") -> None:
        self.stats = stats
        self.user = user
        self.handler = TEXT_HANDLERS[wire]
        self.seen: set[str] = set()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closing = False
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None

    async def run(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed
        self.ws = ws
        try:
            async for msg in ws:
                self.handler(self, msg)
        except ConnectionClosed:
            pass
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before hello: {ws.close_code}"))
        elif not self.closing:
            self.stats.closed += 1
            if len(self.stats.close_samples) < 5:
                self.stats.close_samples.append(
                    f"{self.user}: close {ws.close_code} {ws.close_reason}")

    def send_text(self, text: str) -> None:
        if self.ws is not None:
            asyncio.get_running_loop().create_task(self.ws.send(text))

    def close(self) -> None:
        self.closing = True
        if self.task is not None:
            self.task.cancel()
        if self.ws is not None:
            self.ws.transport.abort()


async def _open_lib(stats: Stats, client: Any, user: str, sock: socket.socket,
                    wait_s: float) -> LibClient:
    from websockets.asyncio.client import connect
    ws = await connect(f"ws://{client.host}:{client.port}{client.ws_path(user)}", sock=sock,
                       compression=None, ping_interval=None, max_queue=None,
                       open_timeout=wait_s)
    c = LibClient(stats, user, client.wire)
    c.task = asyncio.get_running_loop().create_task(c.run(ws))
    if client.wire == "raw":  # open once the handshake is done
        c.ready.set_result(None)
    try:
        await asyncio.wait_for(c.ready, wait_s)
    except BaseException:
        c.close()
        raise
    return c


async def _open(stats: Stats, client: Any, user: str, src_ip: str, wait_s: float,
                kind: str = "raw") -> Any:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((src_ip, 0))
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.wait_for(loop.sock_connect(sock, (client.host, client.port)), wait_s)
    except BaseException:
        sock.close()
        raise
    if kind == "websockets":
        return await _open_lib(stats, client, user, sock, wait_s)
    path = client.ws_path(user)
    _, proto = await loop.create_connection(
        lambda: WsClient(stats, client.host, client.port, path, user, client.wire), sock=sock)
    try:
        await asyncio.wait_for(proto.ready, wait_s)
    except BaseException:
        proto.close()
        raise
    return proto


async def _connect_all(stats: Stats, conns: list[Any], client: Any, users: list[str],
                       src_ip: str, concurrency: int, wait_s: float, kind: str) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(user: str) -> None:
        async with sem:
            err: BaseException | None = None
            for attempt in range(3):
                try:
                    conns.append(await _open(stats, client, user, src_ip, wait_s, kind))
                    stats.connected += 1
                    return
                except (TimeoutError, OSError, ConnectionError) as e:
                    err = e
                    await asyncio.sleep(0.2 * (attempt + 1))
            stats.failed += 1
            if len(stats.fail_samples) < 5:
                stats.fail_samples.append(f"{user}: {type(err).__name__}: {err}")

    await asyncio.gather(*(one(u) for u in users))
    stats.connect_done = True


async def _serve(pipe: Any) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    conns: list[Any] = []
    done = loop.create_future()
    tasks: set[asyncio.Task[None]] = set()

    def on_cmd() -> None:
        os.set_blocking(pipe.fileno(), True)  # the event loop made it non-blocking
        try:
            cmd, arg = pipe.recv()
        except (EOFError, OSError):
            if not done.done():
                done.set_result(None)
            return
        if cmd == "connect":
            stats.connect_done = False
            t = loop.create_task(_connect_all(stats, conns, arg["client"], arg["users"],
                                              arg["src_ip"], arg["concurrency"], arg["timeout"],
                                              arg.get("kind", "raw")))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            pipe.send(True)
        elif cmd == "stats":
            pipe.send({"connected": stats.connected, "failed": stats.failed,
                       "closed": stats.closed, "received": stats.received,
                       "dups": stats.dups, "stray": stats.stray, "other": stats.other,
                       "connect_done": stats.connect_done, "last_rx": stats.last_rx})
        elif cmd == "reset":
            stats.reset(arg)
            pipe.send(True)
        elif cmd == "collect":
            pipe.send({"lat": stats.lat.tobytes(), "rx": stats.rx.tobytes(),
                       "per_id": stats.per_id,
                       "received": stats.received, "dups": stats.dups, "stray": stats.stray,
                       "other": stats.other, "first_rx": stats.first_rx,
                       "last_rx": stats.last_rx, "closed": stats.closed,
                       "close_samples": stats.close_samples, "failed": stats.failed,
                       "fail_samples": stats.fail_samples, "connected": stats.connected})
        elif cmd == "quit":
            for c in conns:
                c.close()
            pipe.send(True)
            if not done.done():
                done.set_result(None)
        else:
            pipe.send(ValueError(f"unknown command {cmd!r}"))

    loop.add_reader(pipe.fileno(), on_cmd)
    try:
        await done
        await asyncio.sleep(0.1)  # let close frames go out
    finally:
        loop.remove_reader(pipe.fileno())
        for t in tasks:
            t.cancel()


def worker_main(pipe: Any, core: int | None) -> None:
    if core is not None:
        os.sched_setaffinity(0, {core})
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop
        uvloop.run(_serve(pipe))
    except ImportError:
        asyncio.run(_serve(pipe))


class LoadWorkers:
    """The parent's handle on N load processes (spawned, pinned to ``core``)."""

    def __init__(self, n: int, core: int | None) -> None:
        ctx = mp.get_context("spawn")
        self.procs: list[Any] = []
        self.pipes: list[Any] = []
        for _ in range(n):
            a, b = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(b, core), daemon=True)
            p.start()
            b.close()
            self.procs.append(p)
            self.pipes.append(a)
        self._lock = asyncio.Lock()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    async def _call(self, i: int, cmd: str, arg: Any = None, wait_s: float = 60.0) -> Any:
        loop = asyncio.get_running_loop()
        pipe = self.pipes[i]
        pipe.send((cmd, arg))
        fut = loop.create_future()
        loop.add_reader(pipe.fileno(), lambda: fut.done() or fut.set_result(None))
        try:
            await asyncio.wait_for(fut, wait_s)
        finally:
            loop.remove_reader(pipe.fileno())
        os.set_blocking(pipe.fileno(), True)  # the event loop made it non-blocking
        res = pipe.recv()
        if isinstance(res, Exception):
            raise res
        return res

    async def call_all(self, cmd: str, args: list[Any] | None = None,
                       wait_s: float = 60.0) -> list[Any]:
        async with self._lock:
            return list(await asyncio.gather(*(
                self._call(i, cmd, None if args is None else args[i], wait_s)
                for i in range(len(self.pipes)))))

    async def stats(self) -> dict[str, Any]:
        parts = await self.call_all("stats")
        out: dict[str, Any] = {k: sum(p[k] for p in parts)
                               for k in ("connected", "failed", "closed", "received", "dups",
                                         "stray", "other")}
        out["connect_done"] = all(p["connect_done"] for p in parts)
        out["last_rx"] = max(p["last_rx"] for p in parts)
        return out

    def stop(self) -> None:
        for i, p in enumerate(self.procs):
            if p.is_alive():
                try:
                    self.pipes[i].send(("quit", None))
                except OSError:
                    pass
        deadline = time.monotonic() + 5
        for p in self.procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(2)
        for pipe in self.pipes:
            pipe.close()
