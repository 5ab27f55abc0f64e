"""The hub's HTTP side: per-client-IP limits and request deadlines on every connection,
``POST /v1/notifications`` on connections of its own, uvicorn's HTTP protocol for the
rest, the hub's websocket class for upgrades.

:func:`guarded_http` builds the protocol class given to ``uvicorn.Config(http=...)``.
On every connection it

- admits it through :class:`~pushgate.hub.limits.ConnectionLimits` (one per hub,
  ``node.conn_limits``: open connections and new connections per second of each client
  IP; refused: ``429`` and closed);
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
    plain-text ``400 Invalid HTTP request received.``; on a send connection the ``400``
    and ``431`` come after the replies of the complete sends before them (a send whose
    body was under way is part of what is refused);
- routes the connection by its **first request** (until then it holds that request's
  raw bytes: the chunks of its head, at most ``max_header_bytes``; no copy when the
  head comes in one read):
  - **an upgrade** (``Connection: upgrade`` with an ``Upgrade`` naming websocket, any
    upgrade to ``/v1/ws`` or a Pushca connection string, and ``CONNECT``; an upgrade to
    another protocol elsewhere — ``h2c`` — is ignored: the request is parsed again
    with its ``Upgrade`` field renamed and routed as below): the websocket class
    (``ws_class``, the hub's :class:`~pushgate.hub.connection.WsConnection`) is made
    with uvicorn's arguments and takes the transport with the head's raw bytes (what
    followed the head in the same read comes next, after the handshake was answered).
    Its handshake is its business: a path other than ``/v1/ws`` (or Pushca's
    connection string ``/{jwt}``) gets its JSON 404,
    what is not a websocket upgrade (``h2c``, ``CONNECT``, HTTP/1.0) a JSON 4xx, and
    the connection ends. An upgrade with a body (``Content-Length`` other than 0,
    ``Transfer-Encoding``; llhttp stops at the head of an upgrade, and that class
    closes on such a request without a reply) is answered by the guard as that class
    answers the same head without a body: ``404`` off the websocket paths, ``405``
    for another method than ``GET``, else ``400``. The websocket class releases the
    connection's per-IP slot itself
    (``releases_connection_limits``; any other class gets
    :class:`~pushgate.hub.limits.ReleaseOnLost`).
  - **``POST /v1/notifications``** (the path as uvicorn decodes it, any query): a
    *send connection* (:mod:`pushgate.hub.sendconn`). The guard answers it itself with
    :mod:`pushgate.hub.sendpath` — the steps, status codes, bodies and headers of
    ``FastSend`` behind uvicorn, byte for byte (uvicorn's status line and default
    ``date`` / ``server`` headers, ``100 Continue`` when the body is first wanted,
    ``connection: close`` for ``Connection: close`` / HTTP/1.0 / shutdown, the app's
    JSON 500 then close on an unexpected exception, logged as uvicorn logs it). One
    task per request; pipelined requests are answered in order, one after the other,
    and reading stops while more than :data:`~pushgate.hub.sendconn.MAX_WAITING` wait
    or the transport's buffer is full. Idle keep-alive connections close after uvicorn's
    ``timeout_keep_alive`` (``http_keepalive_s``). A later request to another route
    whose head begins a read (the normal case) hands the connection to uvicorn from
    that head on, once the sends before it are answered; one pipelined behind a send
    in the same read gets ``400 invalid_request`` and the connection ends (its raw
    bytes cannot be told apart: llhttp does not say where a request begins). So do
    malformed bytes, and a request held for uvicorn before them is dropped (never
    served); the replies of the sends before them are written first.
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
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pushgate.hub.connection import PATH as WS_PATH
from pushgate.hub.guardstate import (
    BODY,
    CLOSED,
    CONNECTED,
    DONE,
    FIRST,
    HANDING,
    HEAD,
    IDLE,
    LINGER,
    PASSTHROUGH,
    SEND,
    UVICORN,
    Abort,
)
from pushgate.hub.httpreplies import error_body, raw_reply
from pushgate.hub.limits import ConnectionLimits, ReleaseOnLost, peer_ip
from pushgate.hub.sendconn import QueuedSend, SendConnection
from pushgate.hub.sendpath import body_too_large, is_send_target
from pushgate.logs import get_logger
from pushgate.pushca_protocol import connection_token

if TYPE_CHECKING:
    from pushgate.hub.node import HubNode

#: After an error reply the guard half-closes and waits this long for the client's end
#: of the connection (so the reply is read, not reset by unread request bytes).
LINGER_S = 2.0

#: A head from a trusted proxy may be this much longer than ``max_header_bytes``: the
#: proxy's own headers (``X-Forwarded-For``, ``X-Forwarded-Proto``, ``X-Real-IP``, …)
#: made a client's head of 16,332 bytes, within the limit, a 431 behind nginx.
PROXY_HEAD_BYTES = 1024

#: Headers llhttp names in its reasons, as the ``field`` of a 400.
_HEADER_NAMES = ("Content-Length", "Transfer-Encoding")

log = get_logger("pushgate.guard")


# -- the protocol -----------------------------------------------------------------------------

class GuardedHttp(SendConnection, asyncio.Protocol):
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

    # (and those of SendConnection)
    __slots__ = ("chunk_fresh", "coded", "codings", "content_coding", "counted", "head_bytes",
                 "head_fresh", "head_limit", "inner", "parser", "piece_began", "piece_done",
                 "upgrade", "url")

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.server_state: Any = kwargs["server_state"]
        self.inner: HttpToolsProtocol | None = None
        self.parser: httptools.HttpRequestParser | None = None
        self.transport: asyncio.Transport | None = None
        self.state = CONNECTED
        self.mode = FIRST
        self.counted: str | None = None  # the IP this connection is counted for
        self.head_bytes = 0
        self.head_limit = self.max_head  # (more from a trusted proxy: PROXY_HEAD_BYTES)
        self.url = b""
        self.piece_began = False
        self.piece_done = False
        self.chunk_fresh = False  # no request ended yet in the chunk being parsed
        self.head_fresh = False  # the head under way began a chunk
        self.held: list[bytes] | None = None  # the chunks of that head (while it may move on)
        self.handover: list[bytes] | None = None  # held bytes for uvicorn or the websocket
        self.queue: list[QueuedSend] | None = None  # the sends not answered yet, in order
        self.parsing: QueuedSend | None = None  # the send whose body is being read
        self.auth: bytes | None = None  # the first Authorization of the head under way
        self.length: bytes | None = None  # its first Content-Length
        self.expect = False  # its Expect: 100-continue
        self.coded = False  # it has a Transfer-Encoding
        self.codings = b""  # the values of its Transfer-Encoding fields, comma-joined
        self.content_coding: bytes | None = None  # its Content-Encoding, when not identity
        self.upgrade: bytes | None = None  # the Upgrade header of the head under way
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
            self.node.metrics.error(refusal)
            message = (f"too many open connections from this address (at most "
                       f"{self.limits.max_connections}); retry later"
                       if refusal == "too_many_connections" else
                       f"too many new connections from this address (at most "
                       f"{self.limits.connect_rate:g} per second); retry later")
            # half-close and linger as after any error reply: closed at once, a request
            # that had arrived unread turned the close into a reset, and the client lost
            # the 429 (a send looked "maybe stored")
            self._end(raw_reply(429, error_body(refusal, message, retryable=True),
                                self.limits.retry_after(refusal)), message)
            return
        if not self.limits.exempt(ip):
            self.counted = ip
        if ip is not None and ip in self.limits.trusted:  # what the proxy adds is not counted
            self.head_limit = self.max_head + PROXY_HEAD_BYTES
        self.parser = self._new_parser()
        self.server_state.connections.add(self)  # uvicorn's shutdown: see shutdown()
        self._set_deadline(self.header_timeout)

    def _new_parser(self) -> httptools.HttpRequestParser:
        parser = httptools.HttpRequestParser(self)
        try:  # accept what uvicorn's own parser accepts
            parser.set_dangerous_leniencies(lenient_data_after_close=True)
        except AttributeError:  # pragma: no cover - httptools < 0.6.3
            pass
        return parser

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state >= PASSTHROUGH:
            if state == PASSTHROUGH and self.inner is not None:
                self.inner.data_received(data)
            return  # lingering after an error reply: the rest of the request is dropped
        mode = self.mode
        if mode >= HANDING:
            if mode == CLOSED:
                return
            if mode == HANDING and self.parser is None:  # stopped at an upgrade: uvicorn's
                self.handover.append(data)  # type: ignore[union-attr]
                return
        self.chunk_fresh = True
        upgraded = plain = False
        try:
            if state == BODY or len(data) + self.head_bytes <= self.head_limit:
                self.piece_began = self.piece_done = False
                self.parser.feed_data(data)  # type: ignore[union-attr]
                if self.state == HEAD:
                    self._count(len(data))
            elif not self._feed_pieces(data):
                self._head_too_large()
                return
        except httptools.HttpParserUpgrade as e:
            upgraded = True
            head_end = e.args[0]  # where the upgrade's head ends in data
        except httptools.HttpParserError as e:
            cause = e.__context__
            if not isinstance(cause, _PlainUpgrade):
                if not isinstance(cause, Abort):
                    self._bad_request(e)
                return
            plain = True
        if plain:  # outside the handler: what parsing it again raises has its own context
            self._as_plain_http(data)
            return
        mode = self.mode
        if mode == UVICORN:
            inner = self.inner
            if inner is None:  # the first request is uvicorn's: from its head on
                inner = self._start_inner()
                held, self.handover = self.handover, None
                for chunk in held or ():
                    inner.data_received(chunk)
            inner.data_received(data)
            if upgraded:
                self._upgraded()
        elif mode == HANDING:
            self.handover.append(data)  # type: ignore[union-attr]
            if upgraded:
                self.parser = None  # paused at the upgrade for good: uvicorn decides
            if not self.queue:
                self._to_uvicorn()
            elif not self.read_paused:
                self._flow()
        elif mode == FIRST and upgraded:
            self._to_websocket(data, head_end)
        elif self.state == HEAD and self.head_fresh:  # keep a head that began this chunk
            if self.held is None:
                self.held = [data]
            else:
                self.held.append(data)

    def eof_received(self) -> bool | None:
        if self.state != LINGER and self.inner is not None:
            self.inner.eof_received()  # HttpToolsProtocol's: None, the transport closes
        return None  # as uvicorn: a client's half-close ends the connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = DONE
        self.mode = CLOSED
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
        if not self.queue and self.state < LINGER and self.transport is not None:
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
            if self.state == BODY:
                piece = view[pos:]
            else:
                room = self.head_limit - self.head_bytes
                if room <= 0:
                    return False
                piece = view[pos:pos + room]
            self.piece_began = self.piece_done = False
            try:
                parser.feed_data(piece)
            except httptools.HttpParserUpgrade as e:  # where it ends in data
                raise httptools.HttpParserUpgrade(pos + e.args[0]) from None
            if self.state == HEAD:
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
        self.state = HEAD
        self.head_bytes = 0
        self.piece_began = True
        self.head_fresh = self.chunk_fresh
        self.held = None
        self.auth = self.length = self.upgrade = None
        self.expect = self.coded = False
        self.codings = b""
        self.content_coding = None
        self._set_deadline(self.header_timeout)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # a send's headers; on uvicorn's connections the body's (an upgrade with one)
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
        elif size == 17 and name.lower() == b"transfer-encoding":
            self.codings = self.codings + b"," + value if self.coded else value
            self.coded = True
        elif size == 7 and name.lower() == b"upgrade":
            self.upgrade = value
        elif size == 16 and name.lower() == b"content-encoding" and \
                value.strip(b" \t").lower() not in (b"", b"identity"):
            self.content_coding = value

    def on_headers_complete(self) -> None:
        url, self.url = self.url, b""
        if url[:1] != b"/":  # what llhttp takes in an origin-form target, parse_url does too
            httptools.parse_url(url)  # uvicorn's check: rejected here, with the JSON body
        self.state = BODY
        self.head_bytes = 0
        self._set_deadline(self.request_timeout)
        mode = self.mode
        parser = self.parser
        assert parser is not None
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":  # llhttp takes 2.0 (h2's preface) too
            self._refuse_after_sends(400, "invalid_request", f"malformed HTTP request: "
                                     f"unsupported HTTP version {version}")
            raise Abort
        if self.coded and not _only_chunked(self.codings):
            # llhttp reads "gzip, chunked" as chunked and hands the coded bytes over as the
            # body: refused instead (no transfer coding but chunked is supported)
            coding = self.codings.decode("latin-1")[:100]
            self._refuse_after_sends(400, "invalid_request", "malformed HTTP request: "
                                     f"unsupported Transfer-Encoding {coding!r} (only "
                                     "'chunked' is supported)", "Transfer-Encoding")
            raise Abort
        if self.content_coding is not None:
            # bodies are read as JSON as they are: plain JSON labelled gzip was served, and
            # a br or deflate body got "not valid JSON: … surrogates not allowed"
            coding = self.content_coding.decode("latin-1")[:100]
            self._refuse_after_sends(400, "invalid_request", "Content-Encoding "
                                     f"{coding!r} is not supported: send the body "
                                     "uncompressed", "Content-Encoding")
            raise Abort
        if mode >= HANDING:
            if parser.should_upgrade():
                self._late_upgrade(url, parser, version)
            return
        if parser.should_upgrade():
            if mode == FIRST:  # HttpParserUpgrade follows: the websocket class takes it
                method = parser.get_method()
                if method != b"CONNECT" and not _is_websocket(self.upgrade) \
                        and not _websocket_path(url):
                    raise _PlainUpgrade  # served as plain HTTP: _as_plain_http
                if method != b"CONNECT" and (self.coded or (
                        self.length is not None and self.length.strip(b" \t") != b"0")):
                    self._refuse_upgrade_with_body(url, method)
                    raise Abort
                self.handover, self.held = self.held, None
                return
            self._late_upgrade(url, parser, version)  # after sends: refused here, or uvicorn's
            send = False
        else:
            send = parser.get_method() == b"POST" and is_send_target(url)
        if send:
            self._send(parser)
        elif mode == FIRST:
            self.mode = UVICORN  # data_received hands the connection over
            self.handover, self.held = self.held, None
        elif self.head_fresh:  # another route on a send connection, at a chunk's start
            self.mode = HANDING
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
                if self.mode == CLOSED:
                    raise Abort

    def on_message_complete(self) -> None:
        self.state = IDLE
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
        elif self.mode == SEND and not self.queue:  # answered before its body was read
            self._set_deadline(self.kwargs["config"].timeout_keep_alive)

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
        self.mode = UVICORN
        self.queue = None
        if self.read_paused:  # before uvicorn's flow control may pause it again
            self.read_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        inner = self._start_inner()
        for chunk in chunks or ():
            inner.data_received(chunk)
        if upgraded:
            self._upgraded()

    def _as_plain_http(self, data: bytes) -> None:
        """The first request asks for another protocol than websocket (``Upgrade: h2c``:
        Java's ``HttpClient`` by default, ``curl --http2``) off the websocket endpoints:
        the upgrade is ignored, as RFC 9110 §7.8 lets a server do, and the request is
        served as HTTP/1.1. Its head is parsed again from its first byte with its
        ``Upgrade`` field renamed (same length), so that neither llhttp here nor
        uvicorn's stops at it: keep-alive and the body work as for any request."""
        raw = b"".join((*self.held, data)) if self.held else data
        plain = _renamed_upgrade(raw)
        if plain == raw:  # pragma: no cover - llhttp saw an Upgrade field that is not there
            self._reject(400, "invalid_request", "malformed HTTP request: unreadable Upgrade "
                         "header", retryable=False, field="Upgrade")
            return
        self.held = None
        self.upgrade = None
        self.state = CONNECTED
        self.head_bytes = 0
        self.parser = self._new_parser()
        self.data_received(plain)

    def _to_websocket(self, data: bytes, head_end: int) -> None:
        """The first request is an upgrade (its head ends at ``head_end`` in ``data``):
        the websocket class takes the connection, from the head's raw bytes on (the
        handshake is that class's business). What follows the head in ``data`` comes in
        a call of its own, after the handshake has been answered."""
        transport = self.transport
        assert transport is not None
        held, self.handover = self.handover, None
        self.state = DONE
        self.mode = CLOSED
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
            transport.set_protocol(ReleaseOnLost(ws, self.limits, ip))
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
        if deadline is None or self.state == DONE:
            return
        now = self.loop.time()
        if now < deadline:
            self.timer = self.loop.call_at(deadline, self._on_timer)
            return
        self.deadline = None
        transport = self.transport
        assert transport is not None
        state = self.state
        if state == HEAD:
            self._reject(408, "request_timeout", f"the request head was not complete within "
                         f"{self.header_timeout:g} s", retryable=True)
        elif state == BODY:
            if self._answered():  # a second reply would be read as the next request's
                self._end(None)
                return
            self._reject(408, "request_timeout", f"the request body was not complete within "
                         f"{self.request_timeout:g} s of its head", retryable=True)
        elif state == LINGER:
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
            self.state = PASSTHROUGH
            self._set_deadline(self.request_timeout)
            return
        self.state = DONE
        self.deadline = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.inner = None
        ip, self.counted = self.counted, None
        if ip is not None and not getattr(protocol, "releases_connection_limits", False):
            transport.set_protocol(ReleaseOnLost(protocol, self.limits, ip))

    def _late_upgrade(self, url: bytes, parser: httptools.HttpRequestParser,
                      version: str) -> None:
        """An upgrade after other requests on the connection (nginx reuses its upstream
        connections): uvicorn hands a websocket one to the websocket class, except what
        that class cannot answer — one with a body (it would close without a reply:
        nginx's 502, and the hub out of its rotation for a while) and one over HTTP/1.0
        (uvicorn rebuilds the head as HTTP/1.1): refused here, as on a first request."""
        method = parser.get_method()
        if method == b"CONNECT":
            return
        if self.coded or (self.length is not None and self.length.strip(b" \t") != b"0"):
            self._refuse_upgrade_with_body(url, method)
            raise Abort
        if version != "1.1" and _is_websocket(self.upgrade):
            self._refuse_after_sends(505, "invalid_request", "not a websocket upgrade: "
                                     f"unsupported HTTP version: HTTP/{version}")
            raise Abort

    def _refuse_upgrade_with_body(self, url: bytes, method: bytes) -> None:
        """The first request is an upgrade with a body, which the websocket class cannot
        read (llhttp stops at the head of an upgrade, and ``websockets`` drops a
        request with one without a reply): the guard gives the answer that class gives
        the same head without a body — ``404`` off the websocket endpoints, ``405`` for
        another method than ``GET`` — or a ``400``."""
        path = urlsplit(url.decode("latin-1")).path
        if path != WS_PATH and connection_token(path) is None:
            self._refuse_after_sends(404, "not_found",
                                     f"no websocket endpoint at {path}; use {WS_PATH}")
        elif method != b"GET":
            self._refuse_after_sends(405, "method_not_allowed", "not a websocket upgrade: "
                                     f"unsupported HTTP method: {method.decode('latin-1')}")
        else:
            self._refuse_after_sends(400, "invalid_request", "not a websocket upgrade: "
                                     "unsupported request body")

    def _head_too_large(self) -> None:
        self._refuse_after_sends(431, "header_too_large", f"the request head is over "
                                 f"{self.max_head} bytes (max_header_bytes)")

    def _bad_request(self, e: httptools.HttpParserError) -> None:
        cause = e.__context__
        if isinstance(e, httptools.HttpParserCallbackError):
            if isinstance(cause, httptools.HttpParserInvalidURLError):
                self._refuse_after_sends(400, "invalid_request", "malformed HTTP request: "
                                         "invalid request target (URL)")
                return
            log.error("HTTP guard callback failed", exc_info=cause)
        reason = str(e) or "malformed request"
        named = [(reason.find(h), h) for h in _HEADER_NAMES if h in reason]
        field = min(named)[1] if named else None
        self._refuse_after_sends(400, "invalid_request", f"malformed HTTP request: {reason}",
                                 field)

    def _answered(self) -> bool:
        """The request whose body is under way was answered already (from its head: a
        401, a 404, a body over the limit), and every reply is written."""
        inner = self.inner
        if inner is not None:
            cycle = inner.cycle
            return cycle is not None and cycle.response_started
        if self.mode != SEND:
            return False
        send = self.parsing  # None: the head had an error reply, its body is skipped
        return (send is None or send.reply is not None) and not self.queue

    def _reject(self, status: int, code: str, message: str, *, retryable: bool,
                field: str | None = None) -> None:
        """Answer with the error body, half-close, and drop the connection when the
        client has closed its side (at most :data:`LINGER_S` later). Replies of sends
        still in flight are dropped (the sends themselves complete)."""
        self.node.metrics.error(code)
        self._end(raw_reply(status, error_body(code, message, retryable=retryable,
                                               field=field)), message)

    def _end(self, reply: bytes | None, message: str = "request ended") -> None:
        """Write ``reply`` (if any), half-close, linger (see :meth:`_reject`)."""
        transport = self.transport
        assert transport is not None
        self.state = LINGER
        self.parser = None
        self.queue = self.parsing = self.held = self.handover = None
        self.server_state.connections.discard(self)
        if self.read_paused:  # the client's close must be seen
            self.read_paused = False
            transport.resume_reading()
        inner, self.inner = self.inner, None
        if inner is not None:  # the app (if a request is under way) sees a disconnect
            inner.connection_lost(ConnectionAbortedError(message))
        if reply is not None:
            transport.write(reply)
        if transport.can_write_eof():
            transport.write_eof()
        self._set_deadline(LINGER_S)


class _PlainUpgrade(Exception):
    """Raised in ``on_headers_complete``: the first request's upgrade is not a websocket
    one; :meth:`GuardedHttp._as_plain_http` serves it as plain HTTP."""


def _only_chunked(codings: bytes) -> bool:
    """The Transfer-Encoding list is ``chunked`` alone (any case, optional whitespace)."""
    return [c.strip(b" \t").lower() for c in codings.split(b",")] == [b"chunked"]


def _is_websocket(upgrade: bytes | None) -> bool:
    return upgrade is not None and b"websocket" in upgrade.lower()


def _websocket_path(url: bytes) -> bool:
    """``/v1/ws`` or a Pushca connection string: there an upgrade that is not a
    websocket one gets the websocket class's ``426``."""
    path = urlsplit(url.decode("latin-1")).path
    return path == WS_PATH or connection_token(path) is not None


def _renamed_upgrade(raw: bytes) -> bytes:
    """``raw`` (from a request head's first byte) with the name of every ``Upgrade``
    field of that head replaced by ``X-Upgrd`` (same length: the bytes after it keep
    their places). A field name follows a line feed; a value cannot hold one (obs-fold
    continues with a space), so ``\nupgrade:`` is a field name."""
    lower = raw.lower()
    start = len(raw) - len(raw.lstrip(b"\r\n"))
    end = lower.find(b"\r\n\r\n", start)
    out = bytearray(raw)
    at = lower.find(b"\nupgrade:", start, end + 1)
    while at != -1:
        out[at + 1:at + 8] = b"X-Upgrd"
        at = lower.find(b"\nupgrade:", at + 8, end + 1)
    return bytes(out)


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
