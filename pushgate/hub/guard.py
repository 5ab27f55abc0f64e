"""The hub's HTTP side: per-client-IP limits and request deadlines on every connection,
``POST /v1/notifications`` on connections of its own, uvicorn's HTTP protocol for the
rest, the hub's websocket class for upgrades.

:class:`ConnectionLimits` (one per hub, ``node.conn_limits``) counts the open TCP
connections of each client IP and rations new connections and ``open-connection``
requests with token buckets. :func:`guarded_http` builds the protocol class given to
``uvicorn.Config(http=...)``. On every connection it

- admits it through :class:`ConnectionLimits` (refused: ``429`` and closed);
- runs an ``httptools.HttpRequestParser`` over every received byte, to know where a
  request head begins and ends and where a body ends (no HTTP parsing here: llhttp
  does it), and answers with the documented JSON error body, then closes, when
  - the request head is not complete ``header_timeout_s`` after the connection was
    made or the request began (``408``; a connection that sent nothing is just closed),
  - the head is over ``max_header_bytes`` (``431``),
  - the body is not complete ``request_timeout_s`` after its head (``408``),
  - llhttp rejects the request: conflicting ``Content-Length`` /
    ``Transfer-Encoding``, a duplicate ``Content-Length``, a malformed line (``400``,
    ``field`` naming the header when llhttp names one) — instead of uvicorn's
    plain-text ``400 Invalid HTTP request received.``;
- routes the connection by its **first request** (until then it holds that request's
  raw bytes: the chunks of its head, at most ``max_header_bytes``; no copy when the
  head comes in one read):
  - **an upgrade** (any ``Connection: upgrade``, and ``CONNECT``): the websocket class
    (``ws_class``, the hub's :class:`~pushgate.hub.connection.WsConnection`) is made
    with uvicorn's arguments and takes the transport with the head's raw bytes (what
    followed the head in the same read comes next, after the handshake was answered).
    Its handshake is its business: a path other than ``/v1/ws`` gets its JSON 404,
    what is not a websocket upgrade (``h2c``, ``CONNECT``, HTTP/1.0) a JSON 4xx, and
    the connection ends. It releases the connection's per-IP slot itself
    (``releases_connection_limits``; any other class gets :class:`_ReleaseOnLost`).
  - **``POST /v1/notifications``** (the path as uvicorn decodes it, any query): a
    *send connection*. The guard answers it itself with
    :mod:`pushgate.hub.sendpath` — the steps, status codes, bodies and headers of
    ``FastSend`` behind uvicorn, byte for byte (uvicorn's status line and default
    ``date`` / ``server`` headers, ``100 Continue`` when the body is first wanted,
    ``connection: close`` for ``Connection: close`` / HTTP/1.0 / shutdown, Starlette's
    plain 500 then close on an unexpected exception, logged as uvicorn logs it). One
    task per request; pipelined requests are answered in order, one after the other,
    and reading stops while more than :data:`MAX_WAITING` wait or the transport's
    buffer is full. Idle keep-alive connections close after uvicorn's
    ``timeout_keep_alive`` (``http_keepalive_s``). A later request to another route
    whose head begins a read (the normal case) hands the connection to uvicorn from
    that head on, once the sends before it are answered; one pipelined behind a send
    in the same read gets ``400 invalid_request`` and the connection ends (its raw
    bytes cannot be told apart: llhttp does not say where a request begins).
  - **anything else**: uvicorn's ``HttpToolsProtocol``, made then, gets every byte
    from the first on (and ``FastSend`` serves ``POST /v1/notifications`` there); an
    upgrade on such a connection is uvicorn's to hand over, as before.

uvicorn's graceful shutdown sees the connections the guard answers in
``server_state.connections`` (:meth:`GuardedHttp.shutdown`: closed when idle, else after
the reply in flight) and their tasks in ``server_state.tasks``.

Why: uvicorn parsed every request a second time behind the guard, and built an ASGI
scope, messages, a ``RequestResponseCycle`` and a task per request; a websocket connect
made an ``HttpToolsProtocol`` (address syscalls, flow control, a parser), parsed the head
again, rebuilt it, and the websocket class parsed it a third time (docs/design-notes.md
§12).

See docs/http-api.md ("Connection limits and timeouts") and docs/operations.md.
"""

from __future__ import annotations

import asyncio
import http
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

import httptools
import orjson
from starlette.requests import Request
from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pushgate.hub.sendpath import (
    INTERNAL_ERROR,
    PATH,
    Reply,
    body_too_large,
    head_error,
    is_send_target,
    respond,
)
from pushgate.logs import get_logger

if TYPE_CHECKING:
    from pushgate.hub.node import HubNode
    from pushgate.settings import Settings

#: After an error reply the guard half-closes and waits this long for the client's end
#: of the connection (so the reply is read, not reset by unread request bytes).
LINGER_S = 2.0

#: Headers llhttp names in its reasons, as the ``field`` of a 400.
_HEADER_NAMES = ("Content-Length", "Transfer-Encoding")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

log = get_logger("pushgate.guard")


# -- per-IP accounting ------------------------------------------------------------------------


class TrustedPeers:
    """Membership in ``trusted_proxies``: exact addresses, CIDR networks
    (``10.0.0.0/8``), ``*`` (every peer) and other literals (compared as strings, as
    uvicorn's ``forwarded_allow_ips`` does)."""

    __slots__ = ("every", "exact", "networks")

    def __init__(self, entries: Iterable[str]) -> None:
        self.every = False
        self.exact: set[str] = set()
        self.networks: list[_Network] = []
        for entry in entries:
            entry = entry.strip()
            if entry == "*":
                self.every = True
            elif "/" in entry:
                try:
                    self.networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    self.exact.add(entry)
            else:
                try:
                    self.exact.add(str(ipaddress.ip_address(entry)))
                except ValueError:
                    self.exact.add(entry)

    def __contains__(self, host: str) -> bool:
        if self.every or host in self.exact:
            return True
        if not self.networks and ":" not in host:
            return False
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address):  # other spellings, IPv4-mapped
            ip = ip.ipv4_mapped or ip
            if str(ip) in self.exact:
                return True
        return any(ip in net for net in self.networks)


class TokenBucket:
    """``rate`` tokens per second, at most ``burst``; starts full."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.tokens = self.burst
        self.stamp = now

    def take(self, now: float) -> float:
        """Take a token: 0.0 when granted, else the seconds until one is due."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        self.tokens = tokens if tokens < self.burst else self.burst
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        """Refilled: forgetting this bucket loses nothing (a new one starts full)."""
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


class _Peer:
    __slots__ = ("bucket", "open")

    def __init__(self, bucket: TokenBucket | None) -> None:
        self.open = 0
        self.bucket = bucket


class _Buckets:
    """One token bucket per key, forgetting refilled ones (memory ~ active keys)."""

    __slots__ = ("buckets", "burst", "clock", "rate", "sweep_at")

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self.clock = clock
        self.buckets: dict[str, TokenBucket] = {}
        self.sweep_at = 1024

    def take(self, key: str) -> float:
        now = self.clock()
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.sweep_at:
                self.buckets = {k: b for k, b in self.buckets.items() if not b.full(now)}
                self.sweep_at = max(1024, 2 * len(self.buckets))
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)


class ConnectionLimits:
    """Per-client-IP limits of one hub process (``node.conn_limits``).

    - at most ``max_connections`` open TCP connections per IP (0 = no limit);
    - new TCP connections per IP rationed by a token bucket of ``connect_rate`` per
      second with a burst of the same size (0 = no limit);
    - ``open-connection`` requests per client IP rationed the same way by
      :meth:`open_connection` (``open_connection_rate``; the IP there is the request's
      client, i.e. the ``X-Forwarded-For`` address behind a trusted proxy).

    Peers in ``trusted`` (``trusted_proxies``: addresses, CIDR networks, ``*``) are not
    counted and not limited by :meth:`admit`: behind nginx every connection comes from
    nginx, which applies the same limits per client address itself. Connections with
    no IP (a unix socket) are not limited either.

    Memory: one small record per IP with open connections or a bucket that is not
    refilled yet; the others are forgotten (swept when the table has doubled since the
    last sweep, so the cost per connection stays constant).

    **The release contract.** :meth:`admit` counts the connection; every admitted
    connection must be released exactly once, by whichever protocol owns its transport
    when the connection is lost:

    - a plain HTTP connection: the guard (:func:`guarded_http`) releases it in its
      ``connection_lost``;
    - a connection upgraded to a websocket: uvicorn moves the transport to its
      websocket protocol (``transport.set_protocol``), so the guard never sees its
      ``connection_lost``. A websocket protocol class that sets the class attribute
      ``releases_connection_limits = True`` promises to call
      ``node.conn_limits.release_for(transport)`` (or ``release(ip)``) in its own
      ``connection_lost``; for any other class the guard puts a thin delegating
      protocol (:class:`_ReleaseOnLost`) in front of it, which does that.

    :meth:`release` of an IP with no open connection counted is a no-op (it never goes
    below zero), but a connection released twice frees a slot of another one: do not.
    """

    def __init__(self, max_connections: int, connect_rate: float, open_connection_rate: float,
                 trusted: Iterable[str] = (), clock: Callable[[], float] = time.monotonic) -> None:
        self.max_connections = max_connections
        self.connect_rate = connect_rate
        self.open_connection_rate = open_connection_rate
        self.trusted = TrustedPeers(trusted)
        self.clock = clock
        self.enabled = max_connections > 0 or connect_rate > 0
        self.peers: dict[str, _Peer] = {}
        self.sweep_at = 1024
        self.opens = _Buckets(open_connection_rate, clock) if open_connection_rate > 0 else None

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        return cls(settings.max_connections_per_ip, settings.connect_rate_per_ip,
                   settings.open_connection_rate_per_ip, settings.trusted_proxies)

    def exempt(self, ip: str | None) -> bool:
        """Not counted nor limited by :meth:`admit` (no IP, or a trusted proxy)."""
        return not ip or not self.enabled or ip in self.trusted

    def admit(self, ip: str | None) -> str | None:
        """Count a new connection from ``ip``: ``None`` when admitted (release it later),
        else the refusal's error code (``too_many_connections`` or ``rate_limited``;
        nothing counted then)."""
        if self.exempt(ip):
            return None
        assert ip is not None
        peer = self.peers.get(ip)
        now = self.clock()
        if peer is None:
            if len(self.peers) >= self.sweep_at:
                self._sweep(now)
            bucket = (TokenBucket(self.connect_rate, self.connect_rate, now)
                      if self.connect_rate > 0 else None)
            peer = self.peers[ip] = _Peer(bucket)
        if 0 < self.max_connections <= peer.open:
            return "too_many_connections"
        if peer.bucket is not None and peer.bucket.take(now) > 0:
            return "rate_limited"
        peer.open += 1
        return None

    def release(self, ip: str | None) -> None:
        """One connection admitted for ``ip`` is gone (see the release contract)."""
        if ip:
            peer = self.peers.get(ip)
            if peer is not None and peer.open > 0:
                peer.open -= 1

    def release_for(self, transport: asyncio.BaseTransport) -> None:
        """:meth:`release` for the peer of ``transport`` (for a websocket protocol's
        ``connection_lost``)."""
        self.release(peer_ip(transport))

    def open_connections(self, ip: str) -> int:
        peer = self.peers.get(ip)
        return peer.open if peer is not None else 0

    def open_connection(self, ip: str | None) -> float:
        """Ration ``open-connection`` requests of client ``ip``: 0.0 when allowed, else
        the seconds until the next one is."""
        if self.opens is None or not ip:
            return 0.0
        return self.opens.take(ip)

    def limit_open_connection(self, request: Request) -> Response | None:
        """:meth:`open_connection` for an HTTP request (client: ``request.client.host``,
        which uvicorn takes from ``X-Forwarded-For`` behind ``trusted_proxies``):
        ``None`` when allowed, else the ``429 rate_limited`` reply with ``Retry-After``."""
        client = request.client
        wait = self.open_connection(client.host if client is not None else None)
        if wait <= 0:
            return None
        return rate_limited_response(wait, "open-connection requests")

    def retry_after(self, code: str) -> int:
        """Seconds for the ``Retry-After`` of a refusal with ``code``."""
        if code == "rate_limited" and self.connect_rate > 0:
            return max(1, math.ceil(1.0 / self.connect_rate))
        return 1

    def _sweep(self, now: float) -> None:
        self.peers = {ip: p for ip, p in self.peers.items()
                      if p.open > 0 or (p.bucket is not None and not p.bucket.full(now))}
        self.sweep_at = max(1024, 2 * len(self.peers))

    def __len__(self) -> int:
        """IPs remembered (open connections or a bucket not refilled yet)."""
        return len(self.peers)


def peer_ip(transport: asyncio.BaseTransport) -> str | None:
    """The client IP of a TCP transport (None for a unix socket)."""
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple | list) and peer and isinstance(peer[0], str):
        return peer[0] or None
    return None


# -- error replies ----------------------------------------------------------------------------


_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 429: b"Too Many Requests",
            431: b"Request Header Fields Too Large"}


def error_body(code: str, message: str, *, retryable: bool, field: str | None = None) -> bytes:
    """The documented error body (docs/http-api.md, "Errors")."""
    error: dict[str, object] = {"code": code, "message": message, "retryable": retryable}
    if field is not None:
        error["field"] = field
    return orjson.dumps({"error": error})


def raw_reply(status: int, body: bytes, retry_after: int | None = None) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 response with a JSON body."""
    head = [b"HTTP/1.1 %d %s" % (status, _REASONS[status]),
            b"content-type: application/json",
            b"content-length: %d" % len(body),
            b"connection: close"]
    if retry_after is not None:
        head.append(b"retry-after: %d" % retry_after)
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def rate_limited_response(wait_s: float, what: str) -> Response:
    """``429 rate_limited`` (retryable) with ``Retry-After``, for an endpoint's rate."""
    body = error_body("rate_limited", f"too many {what} from this address; retry later",
                      retryable=True)
    return Response(body, status_code=429, media_type="application/json",
                    headers={"Retry-After": str(max(1, math.ceil(wait_s)))})


# -- the protocol -----------------------------------------------------------------------------

# parse states (GuardedHttp.state)
_CONNECTED = 0  # nothing of a request yet (header timer from the connect)
_HEAD = 1  # a request head under way (header timer)
_BODY = 2  # head complete, body under way (body timer)
_IDLE = 3  # between requests (keep-alive: uvicorn's timer, or the guard's on a send connection)
_PASSTHROUGH = 4  # an upgrade uvicorn did not take: no more parsing, closed at the deadline
_LINGER = 5  # error reply written and half-closed: waiting for the client's close
_DONE = 6  # refused at connect, handed over to a websocket protocol, closed, or lost

# who answers the connection's requests (GuardedHttp.mode)
_FIRST = 0  # nothing routed yet: the raw bytes of the first request's head are held
_SEND = 1  # a send connection: the guard answers POST /v1/notifications itself
_HANDING = 2  # to uvicorn once the sends in flight are answered (its bytes are held)
_UVICORN = 3  # uvicorn's HttpToolsProtocol (``inner``) gets every byte, as it arrives
_CLOSED = 4  # nothing more is read: closed after a reply, or a pipelined request refused

#: Requests waiting on one send connection before the guard stops reading it
MAX_WAITING = 4

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CONNECTION_CLOSE = b"connection: close\r\n"
_STATUS_LINES: dict[int, bytes] = {}
_DEFAULTS: list[Any] = [None, b""]  # server_state.default_headers seen last, and its bytes
# the line (and logger) uvicorn writes for an exception of the ASGI path
_SERVER_LOG = logging.getLogger("uvicorn.error")


def _status_line(status: int) -> bytes:
    """uvicorn's status line for ``status``."""
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = http.HTTPStatus(status).phrase.encode()
        except ValueError:
            phrase = b""
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d %s\r\n" % (status, phrase)
    return line


def _default_headers(server_state: Any) -> bytes:
    """``server_state.default_headers`` (``date``, ``server``) as uvicorn writes them;
    uvicorn replaces the list every second."""
    headers = server_state.default_headers
    if headers is not _DEFAULTS[0]:
        _DEFAULTS[1] = b"".join([b"%s: %s\r\n" % (name, value) for name, value in headers])
        _DEFAULTS[0] = headers
    return _DEFAULTS[1]  # type: ignore[no-any-return]


class _Abort(Exception):
    """Raised in a parser callback to stop parsing this connection's bytes."""


class _Send:
    """One ``POST /v1/notifications`` of a send connection, from its head to its reply."""

    __slots__ = ("body", "complete", "expect", "fatal", "keep_alive", "refusal", "reply",
                 "started")

    def __init__(self, keep_alive: bool, expect: bool, reply: Reply | None) -> None:
        self.keep_alive = keep_alive
        self.expect = expect  # answer "100 Continue" when it is its turn
        self.reply = reply
        self.body: bytes | bytearray = b""
        self.complete = False  # the whole body arrived
        self.started = False  # its turn came (the head of the queue)
        self.fatal = False  # closed after the reply (a 500)
        self.refusal: str | None = None  # not a send: the 400 that ends the connection


class _ReleaseOnLost(asyncio.Protocol):
    """In front of a websocket protocol that does not release connection limits itself:
    delegates every callback and releases the connection when it is lost."""

    __slots__ = ("ip", "limits", "protocol")

    def __init__(self, protocol: asyncio.BaseProtocol, limits: ConnectionLimits,
                 ip: str) -> None:
        self.protocol: Any = protocol
        self.limits = limits
        self.ip = ip

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # pragma: no cover
        self.protocol.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.protocol.data_received(data)

    def eof_received(self) -> bool | None:
        return self.protocol.eof_received()  # type: ignore[no-any-return]

    def pause_writing(self) -> None:
        self.protocol.pause_writing()

    def resume_writing(self) -> None:
        self.protocol.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.limits.release(self.ip)
        self.protocol.connection_lost(exc)


class GuardedHttp(asyncio.Protocol):
    """The HTTP side of the hub: the guard, the send connections, and uvicorn's
    ``HttpToolsProtocol`` when a request is for uvicorn (see the module docstring).

    Not used directly: :func:`guarded_http` makes a subclass bound to one hub. uvicorn
    creates one per connection with the keyword arguments of its HTTP protocol classes
    (``config``, ``server_state``, ``app_state``), which are passed on unchanged to
    ``HttpToolsProtocol`` and to the websocket class.
    """

    node: HubNode
    limits: ConnectionLimits
    header_timeout: float
    request_timeout: float
    max_head: int
    max_body: int
    ws_class: type[asyncio.Protocol]

    __slots__ = ("auth", "chunk_fresh", "counted", "deadline", "expect", "handover",
                 "head_bytes", "head_fresh", "held", "inner", "kwargs", "length", "loop", "mode",
                 "parser", "parsing", "piece_began", "piece_done", "queue", "read_paused",
                 "server_state", "state", "stopping", "timer", "transport", "url",
                 "write_paused")

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.server_state: Any = kwargs["server_state"]
        self.inner: HttpToolsProtocol | None = None
        self.parser: httptools.HttpRequestParser | None = None
        self.transport: asyncio.Transport | None = None
        self.state = _CONNECTED
        self.mode = _FIRST
        self.counted: str | None = None  # the IP this connection is counted for
        self.head_bytes = 0
        self.url = b""
        self.piece_began = False
        self.piece_done = False
        self.chunk_fresh = False  # no request ended yet in the chunk being parsed
        self.head_fresh = False  # the head under way began a chunk
        self.held: list[bytes] | None = None  # the chunks of that head (while it may move on)
        self.handover: list[bytes] | None = None  # held bytes for uvicorn or the websocket
        self.queue: list[_Send] | None = None  # the sends not answered yet, in order
        self.parsing: _Send | None = None  # the send whose body is being read
        self.auth: bytes | None = None  # the first Authorization of the head under way
        self.length: bytes | None = None  # its first Content-Length
        self.expect = False  # its Expect: 100-continue
        self.stopping = False  # uvicorn's shutdown: close after the reply in flight
        self.read_paused = False
        self.write_paused = False
        self.deadline: float | None = None
        self.timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's: no subclass
        self.loop = asyncio.get_running_loop()
        ip = peer_ip(transport)
        refusal = self.limits.admit(ip)
        if refusal is not None:
            self.state = _DONE
            self.node.metrics.error(refusal)
            message = (f"too many open connections from this address (at most "
                       f"{self.limits.max_connections}); retry later"
                       if refusal == "too_many_connections" else
                       f"too many new connections from this address (at most "
                       f"{self.limits.connect_rate:g} per second); retry later")
            transport.write(raw_reply(429, error_body(refusal, message, retryable=True),
                                      self.limits.retry_after(refusal)))
            transport.close()
            return
        if not self.limits.exempt(ip):
            self.counted = ip
        parser = self.parser = httptools.HttpRequestParser(self)
        try:  # accept what uvicorn's own parser accepts
            parser.set_dangerous_leniencies(lenient_data_after_close=True)
        except AttributeError:  # pragma: no cover - httptools < 0.6.3
            pass
        self.server_state.connections.add(self)  # uvicorn's shutdown: see shutdown()
        self._set_deadline(self.header_timeout)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state >= _PASSTHROUGH:
            if state == _PASSTHROUGH and self.inner is not None:
                self.inner.data_received(data)
            return  # lingering after an error reply: the rest of the request is dropped
        mode = self.mode
        if mode >= _HANDING:
            if mode == _CLOSED:
                return
            if mode == _HANDING and self.parser is None:  # stopped at an upgrade: uvicorn's
                self.handover.append(data)  # type: ignore[union-attr]
                return
        self.chunk_fresh = True
        upgraded = False
        try:
            if state == _BODY or len(data) + self.head_bytes <= self.max_head:
                self.piece_began = self.piece_done = False
                self.parser.feed_data(data)  # type: ignore[union-attr]
                if self.state == _HEAD:
                    self._count(len(data))
            elif not self._feed_pieces(data):
                self._head_too_large()
                return
        except httptools.HttpParserUpgrade as e:
            upgraded = True
            head_end = e.args[0]  # where the upgrade's head ends in data
        except httptools.HttpParserError as e:
            if not isinstance(e.__context__, _Abort):
                self._bad_request(e)
            return
        mode = self.mode
        if mode == _UVICORN:
            inner = self.inner
            if inner is None:  # the first request is uvicorn's: from its head on
                inner = self._start_inner()
                held, self.handover = self.handover, None
                for chunk in held or ():
                    inner.data_received(chunk)
            inner.data_received(data)
            if upgraded:
                self._upgraded()
        elif mode == _HANDING:
            self.handover.append(data)  # type: ignore[union-attr]
            if upgraded:
                self.parser = None  # paused at the upgrade for good: uvicorn decides
            if not self.queue:
                self._to_uvicorn()
            elif not self.read_paused:
                self._flow()
        elif mode == _FIRST and upgraded:
            self._to_websocket(data, head_end)
        elif self.state == _HEAD and self.head_fresh:  # keep a head that began this chunk
            if self.held is None:
                self.held = [data]
            else:
                self.held.append(data)

    def eof_received(self) -> bool | None:
        if self.state != _LINGER and self.inner is not None:
            self.inner.eof_received()  # HttpToolsProtocol's: None, the transport closes
        return None  # as uvicorn: a client's half-close ends the connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = _DONE
        self.mode = _CLOSED
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.server_state.connections.discard(self)
        if self.counted is not None:
            self.limits.release(self.counted)
            self.counted = None
        self.queue = self.parsing = self.held = self.handover = None
        inner, self.inner = self.inner, None
        self.parser = None
        if inner is not None:
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()
            return
        self.write_paused = True
        self._flow()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()
            return
        self.write_paused = False
        self._flow()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown, for the connections the guard answers (uvicorn's
        protocol registers itself when it takes one): closed now when no send is in
        flight, else after the reply in flight (with ``connection: close``); uvicorn
        waits for ``server_state.connections`` and ``server_state.tasks`` to empty."""
        if self.inner is not None:
            self.inner.shutdown()
            return
        self.stopping = True
        if not self.queue and self.state < _LINGER and self.transport is not None:
            self.transport.close()

    # -- parsing ----------------------------------------------------------------------------

    def _feed_pieces(self, data: bytes) -> bool:
        """Parse ``data``, which may take a request head over ``max_head`` bytes; False
        when it does.

        Outside a body the data is fed in pieces of at most the room left for the head,
        so the limit holds to the byte for a head that starts a piece; a head that
        begins after another request in the same piece (pipelining) is counted from the
        next piece on.
        """
        parser = self.parser
        assert parser is not None
        view = memoryview(data)
        pos, end = 0, len(data)
        while pos < end:
            if self.state == _BODY:
                piece = view[pos:]
            else:
                room = self.max_head - self.head_bytes
                if room <= 0:
                    return False
                piece = view[pos:pos + room]
            self.piece_began = self.piece_done = False
            try:
                parser.feed_data(piece)
            except httptools.HttpParserUpgrade as e:  # where it ends in data
                raise httptools.HttpParserUpgrade(pos + e.args[0]) from None
            if self.state == _HEAD:
                self._count(len(piece))
            pos += len(piece)
        return True

    def _count(self, size: int) -> None:
        """A piece of ``size`` bytes was fed and a head is under way."""
        if not self.piece_began:
            self.head_bytes += size  # the same head went on
        elif not self.piece_done:
            self.head_bytes = size  # this piece began the head (after CRLFs at most)
        else:
            self.head_bytes = 0  # pipelined after another request: unknown share

    # parser callbacks (httptools)
    def on_message_begin(self) -> None:
        self.state = _HEAD
        self.head_bytes = 0
        self.piece_began = True
        self.head_fresh = self.chunk_fresh
        self.held = None
        self.auth = self.length = None
        self.expect = False
        self._set_deadline(self.header_timeout)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.mode > _SEND:
            return  # only a send's headers are looked at (uvicorn reads the others)
        size = len(name)
        if size == 13:
            if self.auth is None and name.lower() == b"authorization":
                self.auth = value
        elif size == 14:
            if self.length is None and name.lower() == b"content-length":
                self.length = value
        elif size == 6 and name.lower() == b"expect" and \
                value.rstrip(b" \t").lower() == b"100-continue":
            self.expect = True

    def on_headers_complete(self) -> None:
        url, self.url = self.url, b""
        if url[:1] != b"/":  # what llhttp takes in an origin-form target, parse_url does too
            httptools.parse_url(url)  # uvicorn's check: rejected here, with the JSON body
        self.state = _BODY
        self.head_bytes = 0
        self._set_deadline(self.request_timeout)
        mode = self.mode
        if mode >= _HANDING:
            return
        parser = self.parser
        assert parser is not None
        if parser.should_upgrade():
            if mode == _FIRST:  # HttpParserUpgrade follows: the websocket class takes it
                self.handover, self.held = self.held, None
                return
            send = False
        else:
            send = parser.get_method() == b"POST" and is_send_target(url)
        if send:
            self._send(parser)
        elif mode == _FIRST:
            self.mode = _UVICORN  # data_received hands the connection over
            self.handover, self.held = self.held, None
        elif self.head_fresh:  # another route on a send connection, at a chunk's start
            self.mode = _HANDING
            self.handover = self.held or []
            self.held = None
        else:
            self._refuse_pipelined(parser.get_method())

    def on_body(self, body: bytes) -> None:
        send = self.parsing
        if send is None:
            return
        have = send.body
        if not have:
            send.body = have = body
        else:
            if type(have) is bytes:
                have = send.body = bytearray(have)
            have += body
        if len(have) > self.max_body:
            send.reply = body_too_large(self.node)
            send.body = b""
            self.parsing = None  # the rest of the body is dropped
            if send.started:
                self._pump()
                if self.mode == _CLOSED:
                    raise _Abort

    def on_message_complete(self) -> None:
        self.state = _IDLE
        self.head_bytes = 0
        self.piece_done = True
        self.chunk_fresh = False
        self.deadline = None
        send = self.parsing
        if send is not None:
            self.parsing = None
            send.complete = True
            if send.started:
                self._start(send)
        elif self.mode == _SEND and not self.queue:  # answered before its body was read
            self._set_deadline(self.kwargs["config"].timeout_keep_alive)

    # -- send connections -------------------------------------------------------------------

    def _send(self, parser: httptools.HttpRequestParser) -> None:
        """A ``POST /v1/notifications`` head is complete: queue it (and check its head)."""
        if self.mode == _FIRST:
            self.mode = _SEND
            self.queue = []
        self.held = None
        auth, length = self.auth, self.length
        reply = head_error(self.node,
                           auth.rstrip(b" \t").decode("latin-1") if auth is not None else None,
                           length.rstrip(b" \t").decode("latin-1") if length is not None
                           else None)
        send = _Send(parser.should_keep_alive() and parser.get_http_version() != "1.0",
                     self.expect and reply is None, reply)
        if reply is None:
            self.parsing = send
        self._enqueue(send)
        if self.mode == _CLOSED:  # answered at once, and the connection closes
            raise _Abort

    def _refuse_pipelined(self, method: bytes) -> None:
        """Another route pipelined behind a send, in the same chunk: its raw bytes cannot
        be told apart for uvicorn, so it gets a 400 (after the replies before it) and
        the connection ends."""
        refused = _Send(False, False, None)
        refused.refusal = (
            f"{method.decode('latin-1')} request pipelined behind POST {PATH} on the same "
            f"connection; a connection that begins with POST {PATH} may pipeline only more "
            f"of those: send other requests after the replies, or on another connection")
        self.mode = _CLOSED
        self.parsing = None
        self.deadline = None
        self._enqueue(refused)
        raise _Abort

    def _enqueue(self, send: _Send) -> None:
        queue = self.queue
        assert queue is not None
        queue.append(send)
        if len(queue) == 1:
            self._pump()  # its turn: now
        elif len(queue) > MAX_WAITING and not self.read_paused:
            self._flow()

    def _start(self, send: _Send) -> None:
        """The body of the send whose turn it is is complete: one task serves it."""
        body, send.body = send.body, b""
        task = self.loop.create_task(self._serve(send, body))
        tasks = self.server_state.tasks  # uvicorn's shutdown waits for them
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _serve(self, send: _Send, body: bytes | bytearray) -> None:
        try:
            reply = await respond(self.node, body)
        except Exception as e:
            _SERVER_LOG.error("Exception in ASGI application\n", exc_info=e)
            reply = INTERNAL_ERROR
            send.fatal = True
        send.reply = reply
        queue = self.queue
        if queue and queue[0] is send and not self.transport.is_closing():  # type: ignore[union-attr]
            self._pump()  # (a closing transport: the client is gone, lost follows)

    def _pump(self) -> None:
        """Answer the queue's head while its reply is ready, in order; start the next."""
        queue = self.queue
        transport = self.transport
        assert queue is not None and transport is not None
        answered = False
        while queue:
            send = queue[0]
            if not send.started:
                send.started = True
                if send.refusal is not None:
                    self._reject(400, "invalid_request", send.refusal, retryable=False)
                    return
                if send.expect and not transport.is_closing():
                    transport.write(_CONTINUE)  # as uvicorn: when the body is first wanted
                if send.reply is None:
                    if send.complete:
                        self._start(send)
                    break
            elif send.reply is None:
                break
            del queue[0]
            answered = True
            if not self._write(send):
                return
        if not answered:
            return
        if self.read_paused:
            self._flow()
        if not queue:
            if self.mode == _HANDING:
                self._to_uvicorn()
            elif self.state == _IDLE:
                self._set_deadline(self.kwargs["config"].timeout_keep_alive)

    def _write(self, send: _Send) -> bool:
        """Write the reply as uvicorn writes an ASGI response; False when the connection
        closes after it."""
        reply = send.reply
        transport = self.transport
        assert reply is not None and transport is not None
        keep_alive = send.keep_alive and not self.stopping
        out = [_status_line(reply.status), _default_headers(self.server_state)]
        for name, value in reply.headers:
            out += (name, b": ", value, b"\r\n")
        if not keep_alive:
            out.append(_CONNECTION_CLOSE)
        out += (b"\r\n", reply.body)
        transport.write(b"".join(out))
        self.server_state.total_requests += 1
        if keep_alive and not send.fatal:
            return True
        self.state = _DONE  # nothing more is read or answered
        self.mode = _CLOSED
        self.queue = self.parsing = self.handover = None
        self.deadline = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        transport.close()
        return False

    def _flow(self) -> None:
        """Read while the connection's replies can go out and few requests wait."""
        queue = self.queue
        pause = self.write_paused or self.mode == _HANDING or (
            queue is not None and len(queue) > MAX_WAITING)
        if pause != self.read_paused and self.transport is not None \
                and self.mode <= _HANDING and self.state < _LINGER:
            self.read_paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    # -- handing the connection over --------------------------------------------------------

    def _start_inner(self) -> HttpToolsProtocol:
        """uvicorn's protocol takes the connection (the caller feeds it)."""
        inner = self.inner = HttpToolsProtocol(**self.kwargs)
        self.server_state.connections.discard(self)  # uvicorn's protocol is in it now
        inner.connection_made(self.transport)  # type: ignore[arg-type]
        if self.write_paused:
            inner.pause_writing()
        return inner

    def _to_uvicorn(self) -> None:
        """The sends are answered: uvicorn takes the connection from the held bytes on."""
        chunks, self.handover = self.handover, None
        upgraded = self.parser is None
        self.mode = _UVICORN
        self.queue = None
        if self.read_paused:  # before uvicorn's flow control may pause it again
            self.read_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        inner = self._start_inner()
        for chunk in chunks or ():
            inner.data_received(chunk)
        if upgraded:
            self._upgraded()

    def _to_websocket(self, data: bytes, head_end: int) -> None:
        """The first request is an upgrade (its head ends at ``head_end`` in ``data``):
        the websocket class takes the connection, from the head's raw bytes on (the
        handshake is that class's business). What follows the head in ``data`` comes in
        a call of its own, after the handshake has been answered."""
        transport = self.transport
        assert transport is not None
        held, self.handover = self.handover, None
        self.state = _DONE
        self.mode = _CLOSED
        self.parser = None
        self.deadline = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.server_state.connections.discard(self)  # the websocket class is in it now
        ws: Any = self.ws_class(**self.kwargs)
        ws.connection_made(transport)
        ip, self.counted = self.counted, None
        if ip is not None and not getattr(ws, "releases_connection_limits", False):
            transport.set_protocol(_ReleaseOnLost(ws, self.limits, ip))
        else:
            transport.set_protocol(ws)
        if head_end >= len(data):  # the usual case: nothing after the head
            ws.data_received(b"".join((*held, data)) if held else data)
            return
        ws.data_received(b"".join((*(held or ()), data[:head_end])))
        ws.data_received(data[head_end:])

    # -- deadlines --------------------------------------------------------------------------

    def _set_deadline(self, delay: float) -> None:
        """One timer per connection, moved lazily: a later deadline re-arms it when it
        fires, an earlier one replaces it."""
        when = self.loop.time() + delay
        self.deadline = when
        timer = self.timer
        if timer is None or timer.when() > when:
            if timer is not None:
                timer.cancel()
            self.timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        deadline = self.deadline
        if deadline is None or self.state == _DONE:
            return
        now = self.loop.time()
        if now < deadline:
            self.timer = self.loop.call_at(deadline, self._on_timer)
            return
        self.deadline = None
        transport = self.transport
        assert transport is not None
        state = self.state
        if state == _HEAD:
            self._reject(408, "request_timeout", f"the request head was not complete within "
                         f"{self.header_timeout:g} s", retryable=True)
        elif state == _BODY:
            self._reject(408, "request_timeout", f"the request body was not complete within "
                         f"{self.request_timeout:g} s of its head", retryable=True)
        elif state == _LINGER:
            transport.abort()
        else:  # nothing of a request in time, keep-alive over, or an upgrade uvicorn left
            transport.close()

    # -- endings ----------------------------------------------------------------------------

    def _upgraded(self) -> None:
        """The head of an upgrade request went to uvicorn: if it handed the transport to
        its websocket protocol, the guard is done with this connection."""
        transport = self.transport
        assert transport is not None
        self.parser = None  # paused at the upgrade for good
        protocol = transport.get_protocol()
        if protocol is self:  # not a websocket upgrade: no more requests are parsed
            self.state = _PASSTHROUGH
            self._set_deadline(self.request_timeout)
            return
        self.state = _DONE
        self.deadline = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.inner = None
        ip, self.counted = self.counted, None
        if ip is not None and not getattr(protocol, "releases_connection_limits", False):
            transport.set_protocol(_ReleaseOnLost(protocol, self.limits, ip))

    def _head_too_large(self) -> None:
        self._reject(431, "header_too_large", f"the request head is over {self.max_head} "
                     f"bytes (max_header_bytes)", retryable=False)

    def _bad_request(self, e: httptools.HttpParserError) -> None:
        cause = e.__context__
        if isinstance(e, httptools.HttpParserCallbackError):
            if isinstance(cause, httptools.HttpParserInvalidURLError):
                self._reject(400, "invalid_request", "malformed HTTP request: invalid request "
                             "target (URL)", retryable=False)
                return
            log.error("HTTP guard callback failed", exc_info=cause)
        reason = str(e) or "malformed request"
        named = [(reason.find(h), h) for h in _HEADER_NAMES if h in reason]
        field = min(named)[1] if named else None
        self._reject(400, "invalid_request", f"malformed HTTP request: {reason}",
                     retryable=False, field=field)

    def _reject(self, status: int, code: str, message: str, *, retryable: bool,
                field: str | None = None) -> None:
        """Answer with the error body, half-close, and drop the connection when the
        client has closed its side (at most :data:`LINGER_S` later). Replies of sends
        still in flight are dropped (the sends themselves complete)."""
        transport = self.transport
        assert transport is not None
        self.node.metrics.error(code)
        self.state = _LINGER
        self.parser = None
        self.queue = self.parsing = self.held = self.handover = None
        self.server_state.connections.discard(self)
        if self.read_paused:  # the client's close must be seen
            self.read_paused = False
            transport.resume_reading()
        inner, self.inner = self.inner, None
        if inner is not None:  # the app (if a request is under way) sees a disconnect
            inner.connection_lost(ConnectionAbortedError(message))
        transport.write(raw_reply(status, error_body(code, message, retryable=retryable,
                                                     field=field)))
        if transport.can_write_eof():
            transport.write_eof()
        self._set_deadline(LINGER_S)


def guarded_http(node: HubNode, ws_class: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    """The HTTP protocol class for ``uvicorn.Config(http=...)``, bound to ``node``'s
    :class:`ConnectionLimits` (``node.conn_limits``) and settings; a connection whose
    first request is an upgrade goes to ``ws_class`` (constructed as uvicorn constructs
    its websocket protocol classes: ``config``, ``server_state``, ``app_state``)."""
    settings = node.settings
    return type("GuardedHttp", (GuardedHttp,), {
        "__slots__": (),
        "node": node,
        "limits": node.conn_limits,
        "header_timeout": settings.header_timeout_s,
        "request_timeout": settings.request_timeout_s,
        "max_head": settings.max_header_bytes,
        "max_body": settings.max_request_bytes,
        "ws_class": ws_class,
    })
