"""What a websocket session does: catch up on connect, and serve the client's frames.

The connection layer (:mod:`pushgate.hub.connection`) hands over complete text messages;
here they are parsed (:func:`pushgate.protocol.parse_client_frame`) and served. Acks and
pings are answered at once; requests that need the routing core (fetch, read,
read_state, register_device) are served one after another by a short-lived task per
burst (:class:`Requests`), so replies keep the order of the requests; a ``send`` runs on
its own (it may wait for an ack, which the reader must be free to see). An unexpected
error in one request is logged and answered with an ``internal`` error frame; the
session stays open.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import orjson

from pushgate import protocol as p
from pushgate.errors import Internal, NotFound, PushgateError
from pushgate.hub.node import HubNode
from pushgate.hub.responses import device_payload, events_payload, read_state_payload
from pushgate.hub.session import Session, State
from pushgate.logs import get_logger
from pushgate.store.base import Event, ReadState

log = get_logger("pushgate.hub.ws")
EMPTY_STATE = ReadState(head=0, live=0, unread=0)
#: requests (and, counted apart, sends) waiting per session before its socket stops
#: being read
MAX_PENDING = 32


async def catch_up(node: HubNode, s: Session, after: int | None) -> None:
    """Send ``hello`` and the backlog after ``after``, then open the session (live frames
    held meanwhile are released, those the backlog carried dropped)."""
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
        node.metrics.error(e.code)
        s.close(e.close_code, e.client_message[:120])
        s.end_catch_up(None)
        return
    hello = p.encode_hello(s.id, user, head, unread, node.limits)
    if s.state is not State.CATCHING_UP:  # kicked, shut down or slow while reading
        s.end_catch_up(hello)
        return
    s.push_backlog(hello, 0)
    inline_max = node.settings.inline_event_max_bytes
    for ev in events:
        s.push_backlog(p.event_frame(ev.seq, ev.id, ev.body, ev.created_at, inline_max), ev.seq)
    if events:
        s.note_from_store(events[0].seq, events[-1].seq)
    s.open(events[-1].seq if events else 0, head)


class _Refusal:
    """A frame refused as it was parsed, answered in its turn among the requests."""

    __slots__ = ("error", "rid")

    def __init__(self, error: PushgateError, rid: p.Rid) -> None:
        self.error, self.rid = error, rid


#: websocket sends in flight: not cancelled with their connection (see Requests.cancel)
_SENDS: set[asyncio.Task[None]] = set()


class Requests:
    """One session's client frames (see the module docstring)."""

    __slots__ = ("_paused", "_pending", "_sends", "_tasks", "_transport", "_worker",
                 "_writable", "node", "session")

    def __init__(self, node: HubNode, session: Session, transport: Any) -> None:
        self.node = node
        self.session = session
        self._transport = transport
        self._pending: deque[p.ClientFrame | _Refusal] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sends = 0  # sends being served (each in a task of its own)
        self._paused = False  # reading paused here: too many requests or sends waiting
        # the next request waits for this while the session's replies cannot be written
        self._writable: asyncio.Future[None] | None = None

    def on_text(self, text: str) -> None:
        s, node = self.session, self.node
        try:
            frame = p.parse_client_frame(text, fetch_max_limit=node.settings.fetch_max_limit)
        except p.BadJson as e:
            node.metrics.error(e.code)
            s.close(e.close_code, e.message)
            return
        except PushgateError as e:
            if self._worker is None:
                self._reply_error(e, _raw_rid(text))
            else:  # answered in turn, after the requests before it
                self._pending.append(_Refusal(e, _raw_rid(text)))
            return
        if isinstance(frame, p.Ack):
            node.metrics.acks.inc()
            if not s.knows(frame.seq):  # a seq not sent yet: acks nothing (nor later)
                return
            if frame.seq > s.acked_seq:
                s.acked_seq = frame.seq
            node.router.on_ack(s.identity, s.id, frame.seq,
                               from_store=s.from_store is not None
                               and s.take_from_store(frame.seq))
        elif isinstance(frame, p.Ping):
            if self._worker is None:
                s.push(p.encode_pong(frame.rid))
            else:  # in turn: a ping after requests is answered after their replies
                self._pending.append(frame)
        elif isinstance(frame, p.Send):
            self._sends += 1
            self._spawn(self._serve_send(frame), keep=True)
            self._check_flood()
        else:
            self._pending.append(frame)
            if self._worker is None:
                self._worker = self._spawn(self._serve_pending())
            else:
                self._check_flood()

    def _check_flood(self) -> None:
        """Backpressure on a flood: the socket is not read while :data:`MAX_PENDING`
        requests, or as many sends, wait; read again once both are below."""
        flood = len(self._pending) >= MAX_PENDING or self._sends >= MAX_PENDING
        if flood != self._paused and not self._transport.is_closing():
            self._paused = flood
            if flood:
                self._transport.pause_reading()
            else:
                self._transport.resume_reading()

    def cancel(self) -> None:
        """The connection ended: requests are dropped; sends run to their end (as over
        HTTP and in the cluster, where the router has them: a send the client saw no reply
        to is stored or not whatever the mode, not dropped because it closed first)."""
        for t in list(self._tasks):
            t.cancel()
        self._pending.clear()

    def _spawn(self, coro: Any, keep: bool = False) -> asyncio.Task[None]:
        t = asyncio.get_running_loop().create_task(coro)
        tasks = _SENDS if keep else self._tasks
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        return t

    def writable(self) -> None:
        """The connection resumed writing: a request waiting for it goes on once the
        session's queued frames are out."""
        fut = self._writable
        if fut is not None and not fut.done() and not self.session.backed_up:
            fut.set_result(None)

    async def _serve_pending(self) -> None:
        """Serve the requests in order. While the session's frames wait for the socket,
        the next request waits too (and, past :data:`MAX_PENDING`, the socket is not
        read): a client that asks for fetches without reading the replies holds one
        reply in server memory, not one per request (up to ``fetch_max_bytes`` each)."""
        pending = self._pending
        session = self.session
        try:
            while pending:
                if session.backed_up:
                    if not session.paused_at:  # a reply waits: the write deadline runs
                        session.paused_at = time.monotonic()
                    self._writable = asyncio.get_running_loop().create_future()
                    try:
                        await self._writable
                    finally:
                        self._writable = None
                await self._serve(pending.popleft())
                if self._paused:
                    self._check_flood()
        finally:
            self._worker = None

    async def _serve_send(self, frame: p.ClientFrame) -> None:
        try:
            await self._serve(frame)
        finally:
            self._sends -= 1
            if self._paused:
                self._check_flood()

    def _reply_error(self, e: PushgateError, rid: p.Rid) -> None:
        self.node.metrics.error(e.code)
        self.session.push(p.encode_error(e, rid))

    async def _serve(self, frame: p.ClientFrame | _Refusal) -> None:
        if isinstance(frame, _Refusal):
            self._reply_error(frame.error, frame.rid)
            return
        if isinstance(frame, p.Ping):
            self.session.push(p.encode_pong(frame.rid))
            return
        rid = getattr(frame, "rid", None)
        try:
            reply = await self._answer(frame)
        except PushgateError as e:
            self._reply_error(e, rid)
            return
        except Exception:  # a bug: log it, answer it, keep the session
            log.exception("client frame failed", type=type(frame).__name__)
            self._reply_error(Internal("the server failed to handle this frame"), rid)
            return
        self.session.push(p.encode_reply(rid, reply))

    async def _answer(self, frame: p.ClientFrame) -> dict[str, Any]:
        s, node = self.session, self.node
        user = s.identity.user
        if isinstance(frame, p.Fetch):
            try:
                events, head, more = await node.router.fetch(user, frame.after, frame.limit)
            except NotFound:  # the client's own inbox does not exist yet
                events, head, more = [], 0, False
            if events:
                s.note_from_store(events[0].seq, events[-1].seq)
            return events_payload(events, head, more)
        if isinstance(frame, p.Read):
            try:
                rs = await node.router.mark_read(user, frame.seqs, frame.ranges)
            except NotFound:  # the client's own inbox does not exist yet: nothing to mark
                rs = EMPTY_STATE
            return {"head": rs.head, "unread": rs.unread, "live": rs.live}
        if isinstance(frame, p.ReadStateRequest):
            try:
                rs = await node.router.read_state(user)
            except NotFound:
                rs = EMPTY_STATE
            return read_state_payload(rs)
        if isinstance(frame, p.Send):
            return (await node.client_send(s.identity, frame.request)).to_dict()
        if isinstance(frame, p.RegisterDevice):
            app = frame.app or s.identity.application or "default"
            if frame.remove:
                removed = await node.router.remove_device(user, app, frame.platform, frame.token)
                return {"removed": removed}
            d = await node.router.register_device(user, app, frame.platform, frame.token)
            return device_payload(d)
        raise AssertionError(f"unhandled frame {frame!r}")


def _raw_rid(text: str) -> p.Rid:
    """Best-effort rid of a frame that failed validation, so the error can be matched;
    None when the rid itself is not a valid one (docs/protocol.md: null when it could
    not be read)."""
    try:
        rid = orjson.loads(text).get("rid")
        return p.parse_rid(rid)
    except Exception:
        return None
