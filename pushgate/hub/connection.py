"""The hub's websocket connections: one :class:`WsConnection` (an ``asyncio.Protocol``)
per socket, driven by callbacks — no task and no ASGI call per idle session.

The HTTP guard (:mod:`pushgate.hub.guard`) hands a connection whose first request is an
upgrade straight to this class (:func:`connection_class`); an upgrade that reaches
uvicorn later on a connection comes the same way, as ``uvicorn.Config(ws=...)``. From
then on every byte goes through this module. A plain upgrade (a whole head with
nothing to negotiate) is answered by :mod:`pushgate.hub.handshake` with the 101
``websockets`` would write, and the connection's ``ServerProtocol`` starts open; any
other request is ``ServerProtocol``'s to accept or refuse. Frames
are parsed by ``websockets``' sans-I/O :class:`~websockets.server.ServerProtocol` (which
also answers pings, echoes close frames and fails the connection with 1002 / 1007 /
1009 on protocol errors); server frames are serialized by ``websockets.frames`` and
written straight to the transport. Backpressure is the transport's: above its
high-water mark :meth:`WsConnection.pause_writing` makes the session queue frames (up
to ``send_queue_size``), :meth:`~WsConnection.resume_writing` drains them. Pings,
pong, idle and token deadlines are one :class:`~pushgate.hub.wheel.TimerWheel` for all
connections (:meth:`WsConnection.tick`); the write deadline and the close grace are
timers of the few connections in those states.

Order on connect (so that no stored event can slip between catch-up and live):
upgrade → check shutdown, Origin and token (failures close with a 41xx code and a
reason) → register the session (live frames are held) → ``hello`` and the backlog after
``?after=`` (:func:`pushgate.hub.ws.catch_up`) → release the held live frames, dropping
seqs the backlog already carried.

Pushca's connection string (a path that is one JWT, ``/{jwt}``) makes a
:class:`~pushgate.hub.pushca.PushcaSession` instead: the same checks, no catch-up (it is
open at once), Pushca's messages and commands (:mod:`pushgate.hub.pushca`), and its
pongs count as activity for the idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import struct
import termios
import time
from typing import Any, ClassVar, cast
from urllib.parse import parse_qsl, urlsplit

import orjson
from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State as WsState
from websockets.server import ServerProtocol

from pushgate.auth import bearer
from pushgate.errors import CloseCode, Forbidden, NotFound, PushgateError, ShuttingDown
from pushgate.hub import ws
from pushgate.hub.handshake import Upgrade, plain_upgrade
from pushgate.hub.node import HubNode
from pushgate.hub.pushca import PushcaCommands, PushcaSession, event_fetcher
from pushgate.hub.session import Session, State
from pushgate.logs import get_logger
from pushgate.protocol import parse_after
from pushgate.pushca_protocol import connection_token

# websockets logs every handshake at INFO; keep its warnings and errors only
_PROTOCOL_LOG = logging.getLogger("pushgate.hub.websocket.protocol")
_PROTOCOL_LOG.setLevel(logging.WARNING)
# one line per handshake, as uvicorn wrote it (tokens are redacted by pushgate.logs)
_ACCESS_LOG = logging.getLogger("pushgate.hub.websocket")
log = get_logger("pushgate.hub.websocket")

PING = Frame(Opcode.PING, b"").serialize(mask=False, extensions=[])
#: the first two bytes of the client's answer to PING: FIN + pong, masked, no payload
#: (four mask bytes follow)
EMPTY_PONG_HEAD = Frame(Opcode.PONG, b"").serialize(mask=True, extensions=[])[:2]
PATH = "/v1/ws"
KEEPALIVE_TIMEOUT = 1011


def client_frame_bytes(payload: int) -> int:
    """The size on the wire of a client frame with ``payload`` bytes (masked, the
    shortest length field, no extension). A longer length field than needed only makes
    the count too small, never too large: the connection then never counts a pong
    without ``websockets`` again (:meth:`WsConnection.data_received`)."""
    return payload + (6 if payload < 126 else 8 if payload < 65536 else 14)


def connection_class(node: HubNode) -> type[WsConnection]:
    """The class to pass as ``uvicorn.Config(ws=...)``: connections of ``node``."""
    return type("HubWsConnection", (WsConnection,), {"node": node, "__slots__": ()})


def _first(headers: Headers, name: str) -> str | None:
    values = headers.get_all(name)
    return values[0] if values else None


def _token(query: dict[str, str], authorization: str | None) -> str:
    token = query.get("token")
    if token:
        return token
    return bearer(authorization) or ""


def _addr(peer: Any) -> str:
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "-"


def _origin_allowed(origin: str | None, allowed: list[str]) -> bool:
    return origin is None or "*" in allowed or origin.rstrip("/") in allowed


def _json_response(status: int, reason: str, code: str, message: str,
                   field: str | None = None) -> Response:
    error: dict[str, object] = {"code": code, "message": message, "retryable": False}
    if field is not None:
        error["field"] = field
    body = orjson.dumps({"error": error})
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                       ("Connection", "close")])
    if status == 426:  # RFC 9110 15.5.22: a 426 names the protocol to upgrade to
        headers["Upgrade"] = "websocket"
        if field == "Sec-WebSocket-Version":  # RFC 6455 4.4: and the version understood
            headers["Sec-WebSocket-Version"] = "13"
    return Response(status, reason, headers, body)



#: codes a client's own close is counted under in ``pushgate_disconnects_total``; any
#: other code it closes with is counted as ``client``
_CLIENT_CODES = frozenset({1000, 1001, 1005})

#: the longest close reason sent, in UTF-8 bytes (a close frame's payload is at most 125
#: bytes, 2 of them the code); reasons may echo client input (a token's ``alg``, an
#: ``Origin``) in any script
CLOSE_REASON_BYTES = 120


def close_reason(reason: str) -> str:
    """``reason`` cut to at most :data:`CLOSE_REASON_BYTES` UTF-8 bytes, at a character
    boundary."""
    data = reason.encode()
    if len(data) <= CLOSE_REASON_BYTES:
        return reason
    return data[:CLOSE_REASON_BYTES].decode(errors="ignore")


class WsConnection(asyncio.Protocol):
    """One websocket connection (see the module docstring). It is the session's
    :class:`~pushgate.hub.session.Outlet`."""

    node: ClassVar[HubNode]
    releases_connection_limits: ClassVar[bool] = True  # see pushgate.hub.guard
    __slots__ = ("_binary", "_connected", "_frags", "_requests", "_rx_pending", "_server_conns",
                 "_timer", "_unsent", "awaiting_pong", "close_sent_at", "paused", "ping_sent_at",
                 "proto", "session", "slot", "transport")

    def __init__(self, config: Any = None, server_state: Any = None, app_state: Any = None,
                 _loop: Any = None) -> None:
        # uvicorn's call (config, server_state, app_state): its shutdown closes the
        # connections in server_state.connections and waits for them
        self._server_conns: set[Any] | None = getattr(server_state, "connections", None)
        # made at the first bytes: open at once when they are a plain upgrade
        # (pushgate.hub.handshake), else in the handshake state, fed the request
        self.proto: ServerProtocol | None = None
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.paused = False
        self.slot = -1
        self.ping_sent_at = time.monotonic()  # the last keepalive ping (or the connect)
        self.awaiting_pong = False
        # bytes not yet taken by the client when the write deadline or a ping last looked
        # (see _unsent_bytes): less later means the client is reading
        self._unsent = 0
        self.close_sent_at = 0.0
        self._frags: list[bytes] | None = None
        self._binary = False
        # the write deadline (while paused) or the close grace: rare states, one handle
        self._timer: asyncio.TimerHandle | None = None
        self._requests: ws.Requests | PushcaCommands | None = None
        self._connected = False
        # bytes handed to websockets' parser that no frame has accounted for yet (-1: not
        # known — the connection went through websockets' handshake): 0 means the parser
        # holds no partial frame, the condition of the keepalive pong's short cut
        self._rx_pending = -1

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if self._server_conns is not None:
            self._server_conns.add(self)
        self.node.connections.add(self)
        self.node.no_connections.clear()

    def data_received(self, data: bytes) -> None:
        proto = self.proto
        pending = self._rx_pending
        if pending == 0 and len(data) == 6 and data[:2] == EMPTY_PONG_HEAD \
                and proto is not None and proto.state is WsState.OPEN:
            # the keepalive's answer, alone in its read, at a frame boundary: the exact
            # bytes of an empty masked pong, which websockets would turn into a PONG
            # event and nothing else (design-notes.md §12, "The keepalive pong")
            self._on_pong()
            return
        if proto is None:
            upgrade = plain_upgrade(data)
            if upgrade is not None and self._plain_handshake(upgrade):
                data = data[upgrade.rest:]
                proto = self.proto
                if not data or proto is None:
                    return
            else:
                proto = self._protocol()
            pending = self._rx_pending
        if pending >= 0:
            pending += len(data)
        proto.receive_data(data)
        for event in proto.events_received():
            if isinstance(event, Frame):
                if pending >= 0:
                    pending -= client_frame_bytes(len(event.data))
                self._on_frame(event)
            elif isinstance(event, Request):
                self._on_handshake(event)
        self._rx_pending = pending
        self._flush()

    def eof_received(self) -> bool | None:
        (self.proto or self._protocol()).receive_eof()
        self._flush()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        node = self.node
        if self._server_conns is not None:
            self._server_conns.discard(self)
        node.connections.discard(self)
        if not node.connections:
            node.no_connections.set()
        node.wheel.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            node.conn_limits.release_for(self.transport)  # the guard counted it at connect
        s = self.session
        if s is not None:
            s.closed(self._ended_code())
            code = s.close_code
            proto = self.proto
            if proto is not None and proto.close_rcvd_then_sent and code not in _CLIENT_CODES:
                # a code the client chose: counted as the client's, not as the server's
                # 4001 (the slow-consumer alert) or a new series per code it picks
                node.metrics.disconnects.labels("client").inc()
            else:
                node.metrics.disconnects.labels(str(code)).inc()
        if self._requests is not None:
            self._requests.cancel()

    def pause_writing(self) -> None:
        self.paused = True
        if not self.close_sent_at:
            self._unsent = self._unsent_bytes()
            self._arm(self.node.settings.write_deadline_s / 10, self._write_deadline)

    def _unsent_bytes(self) -> int:
        """What the client has not taken yet: this transport's buffer and the kernel's
        send queue (``SIOCOUTQ``: bytes the client has not acknowledged). It shrinks
        while the client reads, however slowly; a frame of 1 MiB takes 10 s to leave at
        100 KB/s."""
        transport = self.transport
        if transport is None:
            return 0
        unsent = transport.get_write_buffer_size()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, ValueError):
                unsent += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ,
                                                         b"\0\0\0\0"))[0]
        return unsent

    def _still_taking(self) -> bool:
        """Whether the client took data since the last look (and remember this one)."""
        before, self._unsent = self._unsent, self._unsent_bytes()
        return self._unsent < before

    def resume_writing(self) -> None:
        self.paused = False
        if not self.close_sent_at and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.session is not None:
            self.session.drain()
            if self._requests is not None:
                self._requests.writable()

    def shutdown(self) -> None:
        """uvicorn's shutdown: after the node's own (4000 to every session, see
        HubNode.begin_shutdown), what is still open closes with 1012."""
        s = self.session
        if s is not None and s.state in (State.CATCHING_UP, State.OPEN):
            s.close(CloseCode.SHUTDOWN, "server shutting down; reconnect")
        elif self.close_sent_at == 0.0:
            self.send_close(1012, "service restart")

    @property
    def close_flushed(self) -> bool:
        """The close frame was sent and handed to the kernel."""
        return bool(self.close_sent_at) and (
            self.transport is None or self.transport.get_write_buffer_size() == 0)

    def end(self) -> None:
        """End the TCP connection (after what is buffered). Once the close frame went
        out, only our side is closed (FIN) and reading goes on until the client closes
        too (its close frame or EOF; ``close_grace_s`` at most): closing a socket with
        unread bytes — an ack or pong the client sent meanwhile — resets it, and a reset
        throws away what the kernel still holds for a client behind on reading, the close
        frame included."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.close_sent_at and transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()

    # -- the session's outlet --------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.close_sent_at:  # nothing after the close frame
            self.transport.write(data)  # type: ignore[union-attr]

    def send_close(self, code: int, reason: str) -> None:
        """The close frame (once); the client's close or the close grace ends the TCP
        connection."""
        if self.close_sent_at or self.transport is None:
            return
        self._closing_started()
        proto = self.proto
        if proto is not None and proto.state is WsState.OPEN:
            proto.send_close(code, close_reason(reason))
            self._flush()
        elif proto is None or proto.state is not WsState.CLOSED:
            self.transport.close()

    def closing(self, session: Session) -> None:
        """The session stopped receiving: out of the registry now, and out of the
        directory (after connecting finished, if it is still running)."""
        node = self.node
        if node.registry.get(session.id) is session:
            node.registry.discard(session)
            node.metrics.sessions.dec()
            if self._connected:
                node.forget(session)

    def fail(self, code: int, reason: str) -> None:
        """Fail the websocket connection (RFC 6455 7.1.7): close frame, then end."""
        if self.proto is not None and self.proto.state is WsState.OPEN:
            self.proto.fail(code, reason)
            self._flush()

    def tick(self, now_mono: float, now: float) -> None:
        """The timer wheel's checks of this connection (pushgate.hub.wheel): token
        expiry, idle timeout, keepalive ping and pong timeout."""
        s = self.session
        if s is None or self.close_sent_at or (
                s.state is not State.OPEN and s.state is not State.CATCHING_UP):
            return
        settings = self.node.settings
        if s.expires_at <= now:
            s.close(CloseCode.TOKEN_EXPIRED, "token expired; reconnect with a fresh token")
        elif s.last_rx < now_mono - settings.idle_timeout_s:
            s.close(CloseCode.IDLE, f"no frame for {settings.idle_timeout_s:g} s")
        elif self.awaiting_pong:
            if now_mono - self.ping_sent_at >= settings.ping_timeout_s:
                # the ping may wait behind data the client is still reading: one more
                # timeout from now, as long as what it has not taken keeps shrinking
                unsent = self._unsent_bytes()
                if unsent and (self._unsent < 0 or unsent < self._unsent):
                    self._unsent = unsent
                    self.ping_sent_at = now_mono
                else:
                    self.fail(KEEPALIVE_TIMEOUT, "keepalive ping timeout")
        elif now_mono - self.ping_sent_at >= settings.ping_interval_s and not self.paused \
                and self.transport is not None:
            self.ping_sent_at = now_mono
            self.awaiting_pong = True
            self.transport.write(PING)
            self._unsent = -1  # (looked at only if the pong is late)

    # -- internals ---------------------------------------------------------------------

    def _arm(self, delay: float, callback: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, callback)

    def _write_deadline(self) -> None:
        """The transport has been paused for ``write_deadline_s``: a session whose frames
        have waited that long is closed as slow (4001)."""
        self._timer = None
        s = self.session
        if not self.paused or self.close_sent_at or s is None:
            return
        deadline = self.node.settings.write_deadline_s
        now = time.monotonic()
        if s.paused_at and self._still_taking():  # slow, but reading: not stopped
            s.paused_at = now
        waited = now - s.paused_at if s.paused_at else 0.0
        if s.paused_at and waited >= deadline:
            s.close(CloseCode.SLOW, "client stopped reading: write deadline passed; fetch "
                    "after reconnect")
        else:
            # look again every tenth of the deadline (the first time a tenth after the
            # pause): the queue also shrinks for a moment after the client stopped reading
            # (the kernel fills its receive buffer), and a shrink seen only at the deadline
            # made the session wait a whole deadline more (closed at about twice it)
            self._arm(min(deadline - waited, deadline / 10), self._write_deadline)

    def _closing_started(self) -> None:
        """The close frame went out (or the connection failed): from now on nothing is
        written, and the client has ``close_grace_s`` to complete the close handshake."""
        self.close_sent_at = time.monotonic()
        self._arm(self.node.settings.close_grace_s, self._grace_over)

    def _grace_over(self) -> None:
        self._timer = None
        if self.transport is not None:  # no close handshake, or a buffer never drained
            self.transport.abort()

    def _flush(self) -> None:
        transport = self.transport
        proto = self.proto
        if transport is None or proto is None:
            return
        for data in proto.data_to_send():
            if data:
                transport.write(data)
            else:  # end of stream: the close handshake is over (or the handshake failed)
                transport.close()
        if proto.state is not WsState.OPEN and proto.state is not WsState.CONNECTING:
            # the client closed, or websockets failed the connection (1002/1007/1009/1011):
            # nothing more may be written; the session stops receiving now
            if not self.close_sent_at:
                self._closing_started()
            s = self.session
            if s is not None and (s.state is State.OPEN or s.state is State.CATCHING_UP):
                s.abandon(self._ended_code())

    def _ended_code(self) -> int:
        proto = self.proto
        if proto is None:
            return 1006
        if proto.close_sent is not None:
            return proto.close_sent.code
        if proto.close_rcvd is not None:
            return proto.close_rcvd.code
        return 1006

    def _protocol(self, state: WsState = WsState.CONNECTING) -> ServerProtocol:
        proto = self.proto = ServerProtocol(max_size=self.node.settings.max_frame_bytes,
                                            logger=_PROTOCOL_LOG, state=state)
        # open from its first byte: every byte it gets is frames (no extension is ever
        # negotiated, so a frame's size on the wire follows from its payload)
        self._rx_pending = 0 if state is WsState.OPEN else -1
        return proto

    def _reject(self, status: int, reason: str, code: str, message: str,
                field: str | None = None) -> None:
        """Refuse the handshake with the JSON error body, counted as an error."""
        assert self.proto is not None
        self.node.metrics.error(code)
        self.proto.send_response(_json_response(status, reason, code, message, field))
        self._flush()

    def _plain_handshake(self, upgrade: Upgrade) -> bool:
        """Open the connection on a plain upgrade to a websocket endpoint (the 101 goes
        out, the protocol starts open); ``False`` (nothing done): ``websockets`` takes
        the request, as for every other one."""
        url = urlsplit(upgrade.path)
        pushca_token = None if url.path == PATH else connection_token(url.path)
        if (url.path != PATH and pushca_token is None) or self.transport is None:
            return False
        self._protocol(WsState.OPEN)
        self.transport.write(upgrade.response)
        self._opened(upgrade.path, url.query, pushca_token, upgrade.origin,
                     upgrade.authorization)
        return True

    def _on_handshake(self, request: Request) -> None:
        proto = self.proto
        assert proto is not None
        url = urlsplit(request.path)
        pushca_token = None if url.path == PATH else connection_token(url.path)
        if url.path != PATH and pushca_token is None:
            self._reject(404, "Not Found", "not_found",
                         f"no websocket endpoint at {url.path}; use {PATH}")
            return
        response = proto.accept(request)
        if response.status_code != 101:
            exc = proto.handshake_exc
            code = "method_not_allowed" if response.status_code == 405 else "invalid_request"
            # the header at fault (websockets' InvalidHeader and InvalidUpgrade name it)
            name = getattr(exc, "name", None)
            status, reason = response.status_code, response.reason_phrase
            if name == "Sec-WebSocket-Version":  # RFC 6455 4.4: 426 with the version
                status, reason = 426, "Upgrade Required"
            self._reject(status, reason, code, f"not a websocket upgrade: {exc}",
                         name if isinstance(name, str) else None)
            return
        proto.send_response(response)
        self._flush()
        self._opened(request.path, url.query, pushca_token, _first(request.headers, "Origin"),
                     _first(request.headers, "Authorization"))

    def _opened(self, path: str, query_string: str, pushca_token: str | None,
                origin: str | None, authorization: str | None) -> None:
        """The 101 went out: check the connect (a 41xx close when refused), then the
        session starts."""
        node = self.node
        if _ACCESS_LOG.isEnabledFor(logging.INFO):
            peer = self.transport.get_extra_info("peername") if self.transport else None
            _ACCESS_LOG.info('%s - "WebSocket %s" [accepted]', _addr(peer),
                             "/{jwt}" if pushca_token is not None else path)
        self.node.wheel.add(self)
        query = dict(parse_qsl(query_string, keep_blank_values=True))
        try:
            if node.shutting_down:
                raise ShuttingDown("server is shutting down; reconnect later")
            if not _origin_allowed(origin, node.settings.allowed_origins):
                raise Forbidden(f"origin {origin} is not allowed", field="Origin")
            if pushca_token is not None:  # Pushca's connection string: no catch-up
                token = node.tokens.verify(pushca_token)
                after = None
            else:
                token = node.tokens.verify(_token(query, authorization))
                token.require_native()
                after = parse_after(query.get("after"))
        except PushgateError as e:
            node.metrics.error(e.code)
            node.metrics.disconnects.labels(str(int(e.close_code))).inc()
            self.send_close(e.close_code, e.message[:120])
            return
        observe = node.metrics.delivery_latency.observe
        if pushca_token is None:
            # the connect's leeway holds for the session too: a token accepted 3 s after
            # its exp was closed 4101 at the next tick, a session doomed from its hello
            s = Session(token.identity, node.hub_id, node.settings.send_queue_size, self,
                        observe, token.expires_at + node.tokens.leeway_s, node.gaps)
        else:  # no gap filling: without hello there is no head to tell gaps from history;
            # no end at the token's expiry: Pushca's clients cannot refresh it (it only
            # opens the connection) and get no backlog when they reconnect
            s = PushcaSession(token.identity, node.hub_id, node.settings.send_queue_size, self,
                              observe, gaps=None, fetch=event_fetcher(node))
        self.session = s
        node.registry.add(s)
        node.metrics.connects.inc()
        node.metrics.sessions.inc()
        node.spawn(self._connect(s, after))

    async def _connect(self, s: Session, after: int | None) -> None:
        node = self.node
        if isinstance(s, PushcaSession) and node.gaps is not None:
            await self._pushca_order(s)
        try:
            await node.router.connect(s.info)
        except PushgateError as e:  # cluster: no router reachable (retryable close)
            node.metrics.error(e.code)
            s.close(e.close_code, e.client_message[:120])
            s.end_catch_up(None)
            # the router may still record it (a reply lost, or this hub's wait ran out
            # while the directory was failing over): the compare-and-delete that follows
            # the Online on the same stream leaves no ghost
            node.forget(s)
            return
        self._connected = True
        if s.state is not State.CATCHING_UP and s.state is not State.OPEN:
            node.forget(s)  # it closed while the directory took it in
        if not isinstance(s, PushcaSession):
            await ws.catch_up(node, s, after)

    async def _pushca_order(self, s: PushcaSession) -> None:
        """The user's head before the session is announced: from it on, its stored events
        go out in seq order, gaps filled (:meth:`PushcaSession.order_from`). Without it
        (the store does not answer) they go out as they come."""
        node = self.node
        try:
            head = (await node.router.read_state(s.identity.user)).head
        except NotFound:
            head = 0
        except PushgateError as e:
            log.warning("no head for a Pushca session: its events go out as they come",
                        error=e.message)
            return
        assert node.gaps is not None
        s.order_from(head, node.gaps)

    def _on_frame(self, frame: Frame) -> None:
        op = frame.opcode
        data = frame.data if isinstance(frame.data, bytes) else bytes(frame.data)
        if op is Opcode.TEXT or op is Opcode.BINARY:
            if not frame.fin:
                self._frags = [data]
                self._binary = op is Opcode.BINARY
                return
            self._on_message(data, op is Opcode.BINARY)
        elif op is Opcode.CONT:
            frags = self._frags
            if frags is None:  # websockets fails the connection first (1002)
                return
            frags.append(data)
            if frame.fin:
                self._frags = None
                self._on_message(b"".join(frags), self._binary)
        elif op is Opcode.PONG:
            self._on_pong()

    def _on_pong(self) -> None:
        self.awaiting_pong = False
        s = self.session
        if isinstance(s, PushcaSession):  # Pushca clients send no ping of their own:
            s.last_rx = time.monotonic()  # answering the server's pings keeps them

    def _on_message(self, data: bytes, binary: bool) -> None:
        s = self.session
        if s is None or s.state is State.CLOSING or s.state is State.CLOSED:
            return  # closing: what the client sends now is not served
        s.last_rx = time.monotonic()
        if binary:
            s.close(CloseCode.BAD_FRAME, "binary frames are not supported; send JSON text")
            return
        try:
            text = data.decode()
        except UnicodeDecodeError as e:
            self.fail(1007, f"invalid UTF-8 at position {e.start}")
            return
        if self._requests is None:
            self._requests = (PushcaCommands(self.node, s, self.transport)
                              if isinstance(s, PushcaSession)
                              else ws.Requests(self.node, s, self.transport))
        self._requests.on_text(text)
