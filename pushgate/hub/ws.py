"""The websocket endpoint ``GET /v1/ws``: authenticate, register, catch up, serve frames.

Order on connect (so that no stored event can slip between catch-up and live):
accept → check Origin and token (failures close with a 41xx code and a reason) →
register the session (live frames are held) → queue ``hello`` and the backlog after
``?after=`` from the store → release the held live frames, dropping seqs the backlog
already carried.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket
from websockets import protocol as ws_protocol

from pushgate import protocol as p
from pushgate.errors import (
    CloseCode,
    Forbidden,
    InvalidRequest,
    NotFound,
    PushgateError,
    ShuttingDown,
)
from pushgate.hub.node import HubNode
from pushgate.hub.responses import device_payload, events_payload, read_state_payload
from pushgate.hub.session import Session, State
from pushgate.store.base import Event, ReadState

EMPTY_STATE = ReadState(head=0, live=0, unread=0)
RAW_SEND_KEY = "pushgate.raw_send"  # scope key under which FastSend passes the ASGI send


def direct_writer(send: Any) -> Callable[[bytes], bool] | None:
    """A synchronous frame writer for :meth:`Session.push` on uvicorn's
    ``websockets-sansio`` protocol (what ``pushgate serve`` runs), given the server's
    ASGI ``send`` (its bound method). It writes a complete frame to the transport when
    the protocol's own ``websocket.send`` would write at once — handshake done, no close
    sent or received, the transport writable (below its high-water mark) and not
    closing, no extension negotiated — and returns False otherwise, so the caller queues
    the frame for the writer task, which goes through the ASGI ``send`` and waits.
    None for any other server or protocol (e.g. under a test client): then every frame
    goes through the writer task."""
    proto: Any = getattr(send, "__self__", None)
    if type(proto).__name__ != "WebSocketsSansIOProtocol":
        return None
    attrs = ("transport", "conn", "writable", "close_sent", "disconnected",
             "initial_response", "handshake_complete")
    if not all(hasattr(proto, a) for a in attrs) or not hasattr(proto.conn, "state"):
        return None
    if proto.conn.extensions:  # frames would have to be compressed
        return None
    open_state = ws_protocol.State.OPEN
    conn = proto.conn
    writable = proto.writable

    def write(data: bytes) -> bool:
        transport = proto.transport
        if (proto.close_sent or proto.disconnected or not proto.handshake_complete
                or proto.initial_response is not None or not writable.is_set()
                or conn.state is not open_state or transport.is_closing()):
            return False
        transport.write(data)
        return True

    return write


def _origin_allowed(origin: str | None, allowed: list[str]) -> bool:
    return origin is None or "*" in allowed or origin.rstrip("/") in allowed


def _token(ws: WebSocket) -> str:
    token = ws.query_params.get("token")
    if token:
        return token
    auth = ws.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _after(ws: WebSocket) -> int | None:
    raw = ws.query_params.get("after")
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise InvalidRequest("'after' must be an integer >= 0", field="after")
    return int(raw)


async def websocket_endpoint(ws: WebSocket) -> None:
    node: HubNode = ws.app.state.node
    await ws.accept()
    try:
        if node.shutting_down:
            raise ShuttingDown("server is shutting down; reconnect later")
        origin = ws.headers.get("origin")
        if not _origin_allowed(origin, node.settings.allowed_origins):
            raise Forbidden(f"origin {origin} is not allowed", field="Origin")
        token = node.tokens.verify(_token(ws))
        after = _after(ws)
    except PushgateError as e:
        node.metrics.error(e.code)
        node.metrics.disconnects.labels(str(int(e.close_code))).inc()
        await ws.close(e.close_code, e.message[:120])
        return
    await Connection(node, ws, token.identity, token.expires_at).run(after)


class Connection:
    """Drives one accepted, authenticated websocket."""

    def __init__(self, node: HubNode, ws: WebSocket, identity: Any, expires_at: float) -> None:
        self.node = node
        self.ws = ws
        self.session = Session(identity, node.hub_id, node.settings.send_queue_size,
                               node.metrics.delivery_latency.observe, expires_at)
        self._tasks: set[asyncio.Task[None]] = set()
        # the server's own ASGI send, when FastSend passed it on (pushgate.hub.fastpath):
        # event frames skip Starlette's per-message state checks and wrappers
        self._raw_send = ws.scope.get(RAW_SEND_KEY)
        # live frames straight to the socket while the session's queue is empty
        self.session.set_direct(direct_writer(self._raw_send))

    async def run(self, after: int | None) -> None:
        node, s = self.node, self.session
        node.registry.add(s)
        node.metrics.connects.inc()
        node.metrics.sessions.inc()
        writer = asyncio.create_task(s.run_writer(self._send, self._close))
        try:
            try:
                await node.router.connect(s.info)
            except PushgateError as e:  # cluster: no router reachable (retryable close)
                node.metrics.error(e.code)
                s.close(e.close_code, e.message[:120])
                await self._read_loop()  # until the close handshake ends
                return
            await self._hello_and_backlog(after)
            await self._read_loop()
        finally:
            node.registry.discard(s)
            node.metrics.sessions.dec()
            if s.state is not State.CLOSED:
                s.close(CloseCode.NORMAL, "")
            try:
                await node.router.disconnect(s.info)
            except PushgateError as e:  # the directory drops it on the hub's next re-sync
                node.metrics.error(e.code)
            for t in list(self._tasks):
                t.cancel()
            try:
                await asyncio.wait_for(writer, 5)
            except (TimeoutError, Exception):  # the socket is gone either way
                writer.cancel()
            node.metrics.disconnects.labels(str(s.close_code or 1000)).inc()

    async def _send(self, frame: str) -> None:
        if self._raw_send is not None:
            await self._raw_send({"type": "websocket.send", "text": frame})
        else:
            await self.ws.send({"type": "websocket.send", "text": frame})

    async def _close(self, code: int, reason: str) -> None:
        try:
            await self.ws.close(code, reason)
        except RuntimeError:  # already closed by the client
            pass

    async def _hello_and_backlog(self, after: int | None) -> None:
        node, s = self.node, self.session
        user = s.identity.user
        try:
            try:
                rs = await node.router.read_state(user)
                head, unread = rs.head, rs.unread
            except NotFound:  # no inbox yet
                head, unread = 0, 0
            events: list[Event] = []
            if after is not None and head > after:
                # bounded like a fetch and to half the send queue (so live frames still fit);
                # if more remain the client sees head > its last seq and fetches
                limit = min(node.settings.fetch_max_limit, max(1, node.settings.send_queue_size // 2))
                events, _, _ = await node.router.fetch(user, after, limit)
        except PushgateError as e:  # store unavailable: the client retries later
            s.close(e.close_code, e.message[:120])
            return
        s.push_backlog(p.encode_hello(s.id, user, head, unread, node.limits), 0)
        inline_max = node.settings.inline_event_max_bytes
        for ev in events:
            s.push_backlog(p.event_frame(ev.seq, ev.id, ev.body, ev.created_at, inline_max), ev.seq)
        s.open(events[-1].seq if events else 0)

    async def _read_loop(self) -> None:
        receive = self.ws.receive
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                if self.session.close_code is None:
                    self.session.close_code = msg.get("code", 1000)
                return
            self.session.last_rx = time.monotonic()
            text = msg.get("text")
            if text is None:
                self._fail(CloseCode.BAD_FRAME, "binary frames are not supported; send JSON text")
                continue
            try:
                frame = p.parse_client_frame(text, fetch_max_limit=self.node.settings.fetch_max_limit)
            except p.BadJson as e:
                self.node.metrics.error(e.code)
                self._fail(CloseCode.BAD_FRAME, e.message)
                continue
            except PushgateError as e:
                self._reply_error(e, _raw_rid(text))
                continue
            await self._handle(frame)

    def _fail(self, code: int, reason: str) -> None:
        self.session.close(code, reason)

    def _reply_error(self, e: PushgateError, rid: p.Rid) -> None:
        self.node.metrics.error(e.code)
        self.session.push(p.encode_error(e, rid))

    async def _handle(self, frame: p.ClientFrame) -> None:
        s, node = self.session, self.node
        if isinstance(frame, p.Ack):
            if frame.seq > s.acked_seq:
                s.acked_seq = frame.seq
            node.router.on_ack(s.identity, s.id, frame.seq)
            return
        if isinstance(frame, p.Ping):
            s.push(p.encode_pong(frame.rid))
            return
        if isinstance(frame, p.Send):
            # a send may wait for an ack; never block the reader (it must see that ack)
            t = asyncio.create_task(self._request(frame))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
            return
        await self._request(frame)

    async def _request(self, frame: p.ClientFrame) -> None:
        s, node = self.session, self.node
        user = s.identity.user
        rid = getattr(frame, "rid", None)
        try:
            if isinstance(frame, p.Fetch):
                try:
                    events, head, more = await node.router.fetch(user, frame.after, frame.limit)
                except NotFound:  # the client's own inbox does not exist yet
                    events, head, more = [], 0, False
                s.push(p.encode_reply(rid, events_payload(events, head, more)))
            elif isinstance(frame, p.Read):
                try:
                    rs = await node.router.mark_read(user, frame.seqs, frame.ranges)
                except NotFound:  # the client's own inbox does not exist yet: nothing to mark
                    rs = EMPTY_STATE
                s.push(p.encode_reply(rid, {"head": rs.head, "unread": rs.unread, "live": rs.live}))
            elif isinstance(frame, p.ReadStateRequest):
                try:
                    rs = await node.router.read_state(user)
                except NotFound:
                    rs = EMPTY_STATE
                s.push(p.encode_reply(rid, read_state_payload(rs)))
            elif isinstance(frame, p.Send):
                result = await node.client_send(s.identity, frame.request)
                s.push(p.encode_reply(rid, result.to_dict()))
            elif isinstance(frame, p.RegisterDevice):
                app = frame.app or s.identity.application or "default"
                if frame.remove:
                    removed = await node.router.remove_device(user, app, frame.platform, frame.token)
                    s.push(p.encode_reply(rid, {"removed": removed}))
                else:
                    d = await node.router.register_device(user, app, frame.platform, frame.token)
                    s.push(p.encode_reply(rid, device_payload(d)))
        except PushgateError as e:
            self._reply_error(e, rid)


def _raw_rid(text: str) -> p.Rid:
    """Best-effort rid of a frame that failed validation, so the error can be matched."""
    try:
        import orjson

        rid = orjson.loads(text).get("rid")
    except Exception:
        return None
    return rid if isinstance(rid, str | int) and not isinstance(rid, bool) else None
