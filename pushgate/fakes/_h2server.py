"""A small HTTP/2-over-TLS server (:mod:`pushgate._h2wire`, the server role) for the fakes, the
control API they share (``/_fake/...``) and a self-signed certificate maker."""

from __future__ import annotations

import asyncio
import collections
import datetime
import ipaddress
import itertools
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pushgate._h2wire import (
    MAX_CONCURRENT_STREAMS,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    H2Protocol,
    ProtocolViolation,
    StreamBase,
)

Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Rule:
    """A scripted failure: answer ``status`` with ``reason`` ``times`` times."""

    status: int
    reason: str
    retry_after: str | None = None
    times: int = 1


class Ids:
    """Unique ids for answers (``apns-id``, FCM message names) without a random draw
    per answer (``uuid4()`` was ~8 % of a fake's CPU): a random UUID whose last 48 bits
    count up."""

    def __init__(self) -> None:
        self._prefix = str(uuid.uuid4())[:24]
        self._count = itertools.count(int(uuid.uuid4().hex[:6], 16) << 24)

    def uuid(self) -> str:
        return f"{self._prefix}{next(self._count) & 0xFFFFFFFFFFFF:012x}"

    def hex(self) -> str:
        return self.uuid().replace("-", "")[16:]


def json_reply(status: int, obj: Any, headers: dict[str, str] | None = None) -> Reply:
    return status, {"content-type": "application/json", **(headers or {})}, orjson.dumps(obj)


@dataclass
class FakeState:
    """What a fake received and what it was told to answer."""

    total: int = 0  # accepted pushes
    requests: int = 0  # every push request, accepted or not
    counts: dict[str, int] = field(default_factory=lambda: collections.defaultdict(int))
    last: dict[str, Any] = field(default_factory=dict)  # token -> last accepted request
    errors: dict[str, int] = field(default_factory=lambda: collections.defaultdict(int))
    rules: dict[str, collections.deque[Rule]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    record: bool = True  # keep the last request per token (off in big benchmarks)
    history: list[tuple[float, str, int]] = field(default_factory=list)  # (monotonic, token, status)
    changed: asyncio.Event | None = None

    def fail(self, token: str, status: int, reason: str, retry_after: str | None = None,
             times: int = 1) -> None:
        self.rules.setdefault(token, collections.deque()).append(
            Rule(status, reason, retry_after, times))

    def scripted(self, token: str) -> Rule | None:
        rules = self.rules.get(token)
        if not rules:
            return None
        rule = rules[0]
        rule.times -= 1
        if rule.times <= 0:
            rules.popleft()
        return rule

    def accepted(self, token: str, item: Any) -> None:
        self.total += 1
        self.counts[token] += 1
        if self.record:
            self.last[token] = item
            self.history.append((time.monotonic(), token, 200))
        self._notify()

    def refused(self, reason: str, token: str = "", status: int = 0) -> None:
        self.errors[reason] += 1
        if self.record:
            self.history.append((time.monotonic(), token, status))
        self._notify()

    def _notify(self) -> None:
        if self.changed is not None:
            self.changed.set()

    async def wait(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        """Wait until ``predicate()`` holds (checked whenever a request was answered)."""
        if self.changed is None:
            self.changed = asyncio.Event()
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    def stats(self) -> dict[str, Any]:
        dup = sum(1 for n in self.counts.values() if n > 1)
        return {"total": self.total, "requests": self.requests, "tokens": len(self.counts),
                "duplicated_tokens": dup, "errors": dict(self.errors)}

    def control(self, req: Request) -> Reply | None:
        """``GET /_fake/stats``, ``POST /_fake/fail`` ({token, status, reason,
        retry_after, times}), ``POST /_fake/unregister`` ({token}), ``POST /_fake/reset``."""
        if not req.path.startswith("/_fake/"):
            return None
        if req.path == "/_fake/stats":
            return json_reply(200, self.stats())
        try:
            obj = orjson.loads(req.body or b"{}")
        except orjson.JSONDecodeError:
            return json_reply(400, {"error": "body must be JSON"})
        if req.path == "/_fake/fail":
            self.fail(str(obj["token"]), int(obj["status"]), str(obj["reason"]),
                      obj.get("retry_after"), int(obj.get("times", 1)))
        elif req.path == "/_fake/unregister":
            self.gone.add(str(obj["token"]))
        elif req.path == "/_fake/reset":
            self.total = self.requests = 0
            self.counts.clear()
            self.last.clear()
            self.history.clear()
            self.errors.clear()
            self.rules.clear()
            self.gone.clear()
        else:
            return json_reply(404, {"error": "unknown control path"})
        return json_reply(200, {"ok": True})


class _Stream(StreamBase):
    __slots__ = ("body", "headers", "responded")

    def __init__(self, send_window: int, headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__(send_window)
        self.headers = headers
        self.body = bytearray()
        self.responded = False


class _Connection(H2Protocol):
    """The server role on :mod:`pushgate._h2wire` (a provider's side of the wire: a
    request is answered when its stream ends; at most ``max_streams`` open, more are
    refused with ``REFUSED_STREAM`` as RFC 9113 says)."""

    is_client = False

    def __init__(self, handler: Callable[[Request], Reply], max_streams: int,
                 live: set[_Connection]) -> None:
        super().__init__()
        self.handler = handler
        self.live = live
        self.max_streams = max_streams
        self.last_sid = 0  # highest stream the client opened
        self.last_handled = 0  # highest stream whose request the handler saw
        self.refused: set[int] = set()  # streams refused with RST_STREAM (recent ones)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.live.add(self)
        self.start(transport, {MAX_CONCURRENT_STREAMS: self.max_streams})

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self)
        super().connection_lost(exc)

    def on_headers(self, sid: int, fields: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        s = self.streams.get(sid)
        if s is not None:  # trailers
            if end_stream:
                self._respond(sid, s)
            return
        if sid in self.refused:
            return  # trailers of a stream we refused: ignored (RFC 9113 section 5.1)
        if sid % 2 == 0 or sid <= self.last_sid:
            raise ProtocolViolation(PROTOCOL_ERROR, f"new stream {sid} not odd and increasing")
        self.last_sid = sid
        if self.closed:
            return  # after our GOAWAY: ignored
        if len(self.streams) >= self.max_streams:
            self.reset(sid, REFUSED_STREAM)
            if len(self.refused) >= 1024:
                self.refused.clear()
            self.refused.add(sid)
            return
        s = self.streams[sid] = _Stream(self.peer_initial, fields)
        if end_stream:
            self._respond(sid, s)

    def on_data(self, sid: int, stream: _Stream, data: bytes, end_stream: bool) -> None:
        stream.body += data
        if end_stream:
            self._respond(sid, stream)

    def on_reset(self, sid: int, code: int) -> None:
        self.streams.pop(sid, None)

    def last_peer_stream(self) -> int:
        return self.last_handled

    def on_goaway(self, last_sid: int, code: int) -> None:
        self._close_when_done()

    def _close_when_done(self) -> None:
        if self.closed and not self.streams and self.transport is not None:
            self.flush()  # the answers already made leave first
            self.transport.close()

    def on_failure(self, message: str) -> None:
        self.streams.clear()

    def on_sent(self, sid: int, stream: _Stream) -> None:
        self.streams.pop(sid, None)
        self._close_when_done()

    def _respond(self, sid: int, s: _Stream) -> None:
        if s.responded:
            return
        s.responded = True
        self.last_handled = max(self.last_handled, sid)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in s.headers}
        req = Request(headers.get(":method", ""), headers.get(":path", ""), headers, bytes(s.body))
        status, extra, content = self.handler(req)
        out = [(":status", str(status)), *extra.items()]
        if content:
            out.append(("content-length", str(len(content))))
        self.send_headers(sid, out, end_stream=not content)
        if not content or self.send_body(sid, s, content):
            self.streams.pop(sid, None)  # answered (else: when the window allows)
        self.schedule_flush()
        self._close_when_done()


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` and ``127.0.0.1`` (also usable as the
    CA file clients trust): returns ``(cert.pem, key.pem)`` in ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cn = f"pushgate fake provider {x509.random_serial_number():x}"[:64]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


class H2Server:
    """A listening fake; :meth:`close` also drops the open connections."""

    def __init__(self, server: asyncio.Server, live: set[_Connection]) -> None:
        self.server = server
        self.live = live

    def close(self) -> None:
        self.server.close()
        for c in list(self.live):
            if c.transport is not None:
                c.transport.close()

    async def wait_closed(self) -> None:
        await self.server.wait_closed()
        for _ in range(100):  # transports close on the next loop iterations
            if not self.live:
                return
            await asyncio.sleep(0.01)


async def serve_h2(handler: Callable[[Request], Reply], host: str, port: int,
                   cert_dir: Path, max_streams: int = 1000) -> tuple[H2Server, int, Path]:
    """Serve ``handler`` over HTTP/2 + TLS; returns the server, its port and the
    certificate clients should trust."""
    cert, key = make_certificate(cert_dir)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])
    loop = asyncio.get_running_loop()
    live: set[_Connection] = set()
    server = await loop.create_server(lambda: _Connection(handler, max_streams, live), host,
                                      port, ssl=ctx, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    return H2Server(server, live), int(bound), cert
