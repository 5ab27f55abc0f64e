"""The HTTP connection guard: per-client-IP limits and request deadlines in front of
uvicorn's HTTP protocol.

:class:`ConnectionLimits` (one per hub, ``node.conn_limits``) counts the open TCP
connections of each client IP and rations new connections and ``open-connection``
requests with token buckets. :func:`guarded_http` builds the protocol class given to
``uvicorn.Config(http=...)``: it wraps (composes, does not subclass) uvicorn's
``HttpToolsProtocol`` and, on every connection,

- admits it through :class:`ConnectionLimits` (refused: ``429`` and closed);
- runs an ``httptools.HttpRequestParser`` of its own over the received bytes *before*
  uvicorn sees them, to know where a request head begins and ends and where a body
  ends (no HTTP parsing here: llhttp does it), and answers with the documented JSON
  error body, then closes, when
  - the request head is not complete ``header_timeout_s`` after the connection was
    made or the request began (``408``; a connection that sent nothing is just closed),
  - the head is over ``max_header_bytes`` (``431``),
  - the body is not complete ``request_timeout_s`` after its head (``408``),
  - llhttp rejects the request: conflicting ``Content-Length`` /
    ``Transfer-Encoding``, a duplicate ``Content-Length``, a malformed line (``400``,
    ``field`` naming the header when llhttp names one) — instead of uvicorn's
    plain-text ``400 Invalid HTTP request received.``;
- steps aside once the head of a websocket upgrade is complete: uvicorn then hands the
  transport to its websocket protocol class (``transport.set_protocol``), and the guard
  never hears of that connection again.

See docs/http-api.md ("Connection limits and timeouts") and docs/operations.md.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

import httptools
import orjson
from starlette.requests import Request
from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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

# connection states
_CONNECTED = 0  # nothing of a request yet (header timer from the connect)
_HEAD = 1  # a request head under way (header timer)
_BODY = 2  # head complete, body under way (body timer)
_IDLE = 3  # between requests (uvicorn's keep-alive timeout applies)
_PASSTHROUGH = 4  # an upgrade uvicorn did not take: no more parsing, closed at the deadline
_LINGER = 5  # error reply written and half-closed: waiting for the client's close
_DONE = 6  # refused at connect, upgraded (the transport has moved on) or lost


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
    """uvicorn's ``HttpToolsProtocol`` behind the guard (see the module docstring).

    Not used directly: :func:`guarded_http` makes a subclass bound to one hub's limits
    and settings. uvicorn creates one per connection with the keyword arguments of its
    HTTP protocol classes, which are passed on to ``HttpToolsProtocol`` unchanged.
    """

    node: HubNode
    limits: ConnectionLimits
    header_timeout: float
    request_timeout: float
    max_head: int

    __slots__ = ("counted", "deadline", "head_bytes", "inner", "kwargs", "loop", "parser",
                 "piece_began", "piece_done", "state", "timer", "transport", "url")

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs: dict[str, Any] | None = kwargs
        self.inner: HttpToolsProtocol | None = None
        self.parser: httptools.HttpRequestParser | None = None
        self.transport: asyncio.Transport | None = None
        self.state = _CONNECTED
        self.counted: str | None = None  # the IP this connection is counted for
        self.head_bytes = 0
        self.url = b""
        self.piece_began = False
        self.piece_done = False
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
        assert self.kwargs is not None
        self.inner = HttpToolsProtocol(**self.kwargs)
        self.kwargs = None
        parser = self.parser = httptools.HttpRequestParser(self)
        try:  # accept what uvicorn's own parser accepts
            parser.set_dangerous_leniencies(lenient_data_after_close=True)
        except AttributeError:  # pragma: no cover - httptools < 0.6.3
            pass
        self.inner.connection_made(transport)
        self._set_deadline(self.header_timeout)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state >= _PASSTHROUGH:
            if state == _PASSTHROUGH and self.inner is not None:
                self.inner.data_received(data)
            return  # lingering after an error reply: the rest of the request is dropped
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
        except httptools.HttpParserUpgrade:
            upgraded = True
        except httptools.HttpParserError as e:
            self._bad_request(e)
            return
        inner = self.inner
        assert inner is not None
        inner.data_received(data)
        if upgraded:
            self._upgraded()

    def eof_received(self) -> bool | None:
        if self.state != _LINGER and self.inner is not None:
            self.inner.eof_received()  # HttpToolsProtocol's: None, the transport closes
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = _DONE
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.counted is not None:
            self.limits.release(self.counted)
            self.counted = None
        inner, self.inner = self.inner, None
        self.parser = None
        if inner is not None:
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown (it calls the inner protocol's directly, which
        registers itself in ``server_state.connections``)."""
        if self.inner is not None:
            self.inner.shutdown()

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
            parser.feed_data(piece)
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
        self._set_deadline(self.header_timeout)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_headers_complete(self) -> None:
        url, self.url = self.url, b""
        if url[:1] != b"/":  # what llhttp takes in an origin-form target, parse_url does too
            httptools.parse_url(url)  # uvicorn's check: rejected here, with the JSON body
        self.state = _BODY
        self.head_bytes = 0
        self._set_deadline(self.request_timeout)

    def on_message_complete(self) -> None:
        self.state = _IDLE
        self.head_bytes = 0
        self.piece_done = True
        self.deadline = None

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
        else:  # nothing of a request arrived in time, or an upgrade uvicorn did not take
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
        client has closed its side (at most :data:`LINGER_S` later)."""
        transport = self.transport
        assert transport is not None
        self.node.metrics.error(code)
        self.state = _LINGER
        self.parser = None
        inner, self.inner = self.inner, None
        if inner is not None:  # the app (if a request is under way) sees a disconnect
            inner.connection_lost(ConnectionAbortedError(message))
        transport.write(raw_reply(status, error_body(code, message, retryable=retryable,
                                                     field=field)))
        if transport.can_write_eof():
            transport.write_eof()
        self._set_deadline(LINGER_S)


def guarded_http(node: HubNode) -> type[asyncio.Protocol]:
    """The HTTP protocol class for ``uvicorn.Config(http=...)``, bound to ``node``'s
    :class:`ConnectionLimits` (``node.conn_limits``) and settings."""
    settings = node.settings
    return type("GuardedHttp", (GuardedHttp,), {
        "__slots__": (),
        "node": node,
        "limits": node.conn_limits,
        "header_timeout": settings.header_timeout_s,
        "request_timeout": settings.request_timeout_s,
        "max_head": settings.max_header_bytes,
    })
