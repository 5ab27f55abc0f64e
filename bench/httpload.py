"""Minimal HTTP/1.1 keep-alive client (asyncio.Protocol + httptools) for low load-side
overhead, and a connection pool."""

from __future__ import annotations

import asyncio
import socket
from collections import deque

import httptools

from bench.targets import Request


class HttpConn(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.body = bytearray()
        self.fut: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(ConnectionError(f"HTTP connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            if self.fut is not None and not self.fut.done():
                self.fut.set_exception(ConnectionError(f"bad HTTP response: {e}"))
            self.transport.close()  # type: ignore[union-attr]

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.body = bytearray()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        if self.fut is not None and not self.fut.done():
            self.fut.set_result((self.parser.get_status_code(), bytes(self.body)))

    def write(self, raw: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.fut = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self.fut

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def encode(host: str, port: int, req: Request) -> bytes:
    head = [f"POST {req.path} HTTP/1.1", f"Host: {host}:{port}",
            "Content-Type: application/json", f"Content-Length: {len(req.body)}"]
    head.extend(f"{k}: {v}" for k, v in req.headers)
    return ("\r\n".join(head) + "\r\n\r\n").encode() + req.body


class HttpPool:
    """Keep-alive connections to one server; grows up to ``max_conns``."""

    def __init__(self, host: str, port: int, max_conns: int = 256) -> None:
        self.host, self.port, self.max_conns = host, port, max_conns
        self.idle: deque[HttpConn] = deque()
        self.count = 0
        self.peak = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def connect(self) -> HttpConn:
        """A dedicated connection (not counted in the pool)."""
        _, c = await asyncio.get_running_loop().create_connection(HttpConn, self.host, self.port)
        return c

    async def _acquire(self) -> HttpConn:
        while True:
            while self.idle:
                c = self.idle.pop()
                if not c.lost:
                    return c
                self.count -= 1
            if self.count < self.max_conns:
                self.count += 1
                self.peak = max(self.peak, self.count)
                try:
                    _, c = await asyncio.get_running_loop().create_connection(
                        HttpConn, self.host, self.port)
                except BaseException:
                    self.count -= 1
                    raise
                return c
            fut = asyncio.get_running_loop().create_future()
            self.waiters.append(fut)
            await fut

    def _release(self, c: HttpConn) -> None:
        if c.lost:
            self.count -= 1
        else:
            self.idle.append(c)
        while self.waiters:
            w = self.waiters.popleft()
            if not w.done():
                w.set_result(None)
                break

    async def send(self, raw: bytes, wait_s: float = 30.0) -> tuple[int, bytes]:
        c = await self._acquire()
        try:
            return await asyncio.wait_for(c.write(raw), wait_s)
        except BaseException:
            c.close()
            c.lost = True
            raise
        finally:
            self._release(c)

    async def prewarm(self, n: int) -> None:
        conns = [await self._acquire() for _ in range(min(n, self.max_conns))]
        for c in conns:
            self._release(c)

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()
