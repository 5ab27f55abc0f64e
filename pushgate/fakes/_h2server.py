"""A small HTTP/2-over-TLS server (h2 state machine on asyncio) for the fakes, the
control API they share (``/_fake/...``) and a self-signed certificate maker."""

from __future__ import annotations

import asyncio
import collections
import datetime
import ipaddress
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import h2.events
import h2.settings
import orjson

from pushgate._h2 import new_connection

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


class _Connection(asyncio.Protocol):
    def __init__(self, handler: Callable[[Request], Reply], max_streams: int,
                 live: set[_Connection]) -> None:
        self.handler = handler
        self.live = live
        self.conn = new_connection(client_side=False)
        self.max_streams = max_streams
        self.streams: dict[int, tuple[list[tuple[str, str]], bytearray]] = {}
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop: no subclass
        self.live.add(self)
        self.conn.initiate_connection()
        self.conn.update_settings({
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams})
        transport.write(self.conn.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            events = self.conn.receive_data(data)
        except Exception:  # protocol error: drop the connection
            self.transport.close()
            return
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                self.streams[ev.stream_id] = (list(ev.headers), bytearray())  # type: ignore[arg-type]
            elif isinstance(ev, h2.events.DataReceived):
                stream = self.streams.get(ev.stream_id)
                if stream is not None:
                    stream[1].extend(ev.data)
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self._respond(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                self.streams.pop(ev.stream_id, None)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.transport.close()
        out = self.conn.data_to_send()
        if out:
            self.transport.write(out)

    def _respond(self, stream_id: int) -> None:
        raw_headers, body = self.streams.pop(stream_id)
        headers = {str(k).lower(): str(v) for k, v in raw_headers}
        req = Request(headers.get(":method", ""), headers.get(":path", ""), headers, bytes(body))
        status, extra, content = self.handler(req)
        out = [(":status", str(status)), ("content-length", str(len(content))),
               *extra.items()]
        self.conn.send_headers(stream_id, out, end_stream=not content)
        if content:
            self.conn.send_data(stream_id, content, end_stream=True)


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
