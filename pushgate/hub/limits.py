"""Per-client-IP limits of a hub process: open TCP connections, new connections per
second, and ``open-connection`` requests per second (``node.conn_limits``).

The HTTP guard (:mod:`pushgate.hub.guard`) admits every connection through
:class:`ConnectionLimits`; the websocket connection releases it
(:meth:`ConnectionLimits.release_for`); the ``open-connection`` routes ration their
callers with :meth:`ConnectionLimits.limit_open_connection`. See docs/http-api.md
("Connection limits and timeouts").
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from pushgate.hub.httpreplies import error_body
from pushgate.ratelimit import Buckets, TokenBucket

if TYPE_CHECKING:
    from pushgate.settings import Settings

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


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


class _Peer:
    __slots__ = ("bucket", "open")

    def __init__(self, bucket: TokenBucket | None) -> None:
        self.open = 0
        self.bucket = bucket


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
      protocol (:class:`ReleaseOnLost`) in front of it, which does that.

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
        self.opens = (Buckets(open_connection_rate, open_connection_rate)
                      if open_connection_rate > 0 else None)

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
        return self.opens.take(ip, self.clock())

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


class ReleaseOnLost(asyncio.Protocol):
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


def peer_ip(transport: asyncio.BaseTransport) -> str | None:
    """The client IP of a TCP transport (None for a unix socket)."""
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple | list) and peer and isinstance(peer[0], str):
        return peer[0] or None
    return None


def rate_limited_response(wait_s: float, what: str) -> Response:
    """``429 rate_limited`` (retryable) with ``Retry-After``, for an endpoint's rate."""
    body = error_body("rate_limited", f"too many {what} from this address; retry later",
                      retryable=True)
    return Response(body, status_code=429, media_type="application/json",
                    headers={"Retry-After": str(max(1, math.ceil(wait_s)))})
