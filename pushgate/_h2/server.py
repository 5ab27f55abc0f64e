"""The server role (:func:`serve_h2`): HTTP/2 over TLS on
:mod:`pushgate._h2.connection`, a provider's side of the wire, for the fake providers
(:mod:`pushgate.fakes`).

A request is handed to the handler when its stream ends (trailers, if any, are read
and dropped) and its reply is sent at once; at most ``max_streams`` streams are open
per connection, more are refused with ``REFUSED_STREAM`` as RFC 9113 says. The handler
runs on the event loop and must not block. :func:`make_certificate` makes the
self-signed certificate it serves (and clients trust).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Callable, Set
from dataclasses import dataclass
from pathlib import Path

from pushgate._h2.connection import H2Protocol, ProtocolViolation, StreamBase
from pushgate._h2.frames import MAX_CONCURRENT_STREAMS, PROTOCOL_ERROR, REFUSED_STREAM
from pushgate._h2.hpack import NOT_INDEXED

Reply = tuple[int, dict[str, str], bytes]  # status, headers, body


@dataclass
class Request:
    """A request as the handler gets it: header names in lower case, the
    pseudo-headers among them, names and values decoded as latin-1."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Stream(StreamBase):
    __slots__ = ("body", "headers", "responded")

    def __init__(self, send_window: int, headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__(send_window)
        self.headers = headers
        self.body = bytearray()
        self.responded = False


class _Connection(H2Protocol):
    """One connection of the server role (see the module docstring); ``live``: the
    server's open connections, which this one joins and leaves."""

    is_client = False

    def __init__(self, handler: Callable[[Request], Reply], max_streams: int,
                 live: set[_Connection], not_indexed: Set[str] = NOT_INDEXED) -> None:
        super().__init__(not_indexed)
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
                   cert_dir: Path, max_streams: int = 1000,
                   not_indexed: Set[str] = NOT_INDEXED) -> tuple[H2Server, int, Path]:
    """Serve ``handler`` over HTTP/2 + TLS; returns the server, its port and the
    certificate clients should trust. ``not_indexed``: the response header names
    whose values are unique to an answer (the provider's own added to
    :data:`pushgate._h2.hpack.NOT_INDEXED`), never put in the HPACK table."""
    cert, key = make_certificate(cert_dir)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])
    loop = asyncio.get_running_loop()
    live: set[_Connection] = set()
    server = await loop.create_server(lambda: _Connection(handler, max_streams, live, not_indexed),
                                      host, port, ssl=ctx, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    return H2Server(server, live), int(bound), cert
