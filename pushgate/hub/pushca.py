"""Pushca connections: a :class:`PushcaSession` writes Pushca's messages, and
:class:`PushcaCommands` serves Pushca's commands (codec: :mod:`pushgate.pushca_protocol`).

A connection opened through Pushca's connection string (``/{jwt}``,
:mod:`pushgate.hub.connection`) is a native session in every other respect: it is in the
registry and the directory, filters and sends reach it, slow consumers are closed the
same way. What differs is what it sees: no ``hello``, no backlog, no replies or
``kicked`` frames (stored events, seqs and read state stay native features); live
events come as the plain body, or as ``<messageId>@@<body>`` when the send waits for an
acknowledge. A stored event over ``inline_event_max_bytes``, announced to native
clients by ``head`` only, is fetched by the session and written whole; frames that
arrive meanwhile wait behind it, so the order is kept. Its ACKNOWLEDGE command is the
native ack of that event's seq, so the sender's ``/send-notification-with-acknowledge``
(or ``ack`` send) returns 200.

SEND_MESSAGE and SEND_MESSAGE_WITH_ACKNOWLEDGE take the translation of the HTTP aliases
(:func:`pushgate.router.requests.from_pushca`) and the same send path; a filter stays
inside the sender's workspace (as a native client's send). Sends without acknowledge are
served one after another (so they leave in the order they came, Pushca's
``preserveOrder``); a send with acknowledge runs on its own, as it waits for the ack.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from pushgate import protocol as p
from pushgate import pushca_protocol as pp
from pushgate.auth import Identity
from pushgate.errors import CloseCode, Internal, InvalidRequest, PushgateError
from pushgate.hub.node import HubNode, client_send_key
from pushgate.hub.session import GapSource, Observe, Outlet, Session, State
from pushgate.logs import get_logger
from pushgate.router.requests import from_pushca, parse_send

log = get_logger("pushgate.hub.pushca")
MAX_PENDING = 32  # sends waiting per session before its socket stops being read
#: The native event frame of a stored event (user, seq), None if it is gone.
FetchEvent = Callable[[str, int], Awaitable[str | None]]
_HEAD = '{"type":"head"'

_last_frame: str | None = None
_last_message: pp.Message | None = None


def _message(frame: str) -> pp.Message | None:
    """:func:`pp.message_of`, kept for the last frame: a fan-out pushes the same ``str``
    to every session in a row."""
    global _last_frame, _last_message
    if frame is not _last_frame:
        _last_message = pp.message_of(frame)
        _last_frame = frame
    return _last_message


def event_fetcher(node: HubNode) -> FetchEvent:
    """A :data:`FetchEvent` reading the store through ``node.router``."""
    async def fetch(user: str, seq: int) -> str | None:
        try:
            events, _, _ = await node.router.fetch(user, seq - 1, 1)
        except PushgateError as e:  # store unavailable: the message is not written
            node.metrics.error(e.code)
            log.warning("fetching a large event for a Pushca session failed", error=e.message)
            return None
        if not events or events[0].seq != seq:
            return None  # expired meanwhile
        ev = events[0]
        return p.encode_event(ev.seq, ev.id, ev.body, ev.created_at)
    return fetch


class PushcaSession(Session):
    """A session that writes Pushca's messages (see the module docstring). It has no
    catch-up: it is OPEN from the start. Its stored events are put in seq order as a
    native session's are (in a cluster two routers' deliveries can cross): from the
    user's head read before the session was announced (:meth:`order_from`), a seq past a
    gap is held and the gap filled from the store, with whole events (a Pushca client
    cannot fetch)."""

    whole_events = True

    __slots__ = ("_awaiting", "_behind", "_fetch", "_fetching")

    def __init__(self, identity: Identity, hub: str, max_queue: int, out: Outlet,
                 observe: Observe | None = None, expires_at: float = float("inf"),
                 gaps: GapSource | None = None, fetch: FetchEvent | None = None):
        super().__init__(identity, hub, max_queue, out, observe, expires_at, gaps)
        self.state = State.OPEN
        # messageId -> seqs of the messages written with that id, waiting for ACKNOWLEDGE
        # (oldest first: two senders may use one id, and an id-less message's id is its
        # seq, which a numeric id of another message can equal)
        self._awaiting: OrderedDict[str, list[int]] = OrderedDict()
        self._fetch = fetch
        self._fetching: asyncio.Task[None] | None = None
        # frames that came while a large event is fetched (None: no fetch running)
        self._behind: deque[tuple[str, int, float, bool]] | None = None

    def push(self, frame: str, seq: int = 0, t0: float = 0.0, again: bool = False) -> bool:
        if self._behind is not None:  # a large event is being fetched: keep the order
            if self.state is not State.OPEN:
                return False
            if len(self._behind) >= self.max_queue:
                self.close(CloseCode.SLOW, "send queue overflow: client too slow")
                return False
            self._behind.append((frame, seq, t0, again))
            return True
        if not frame:  # a skip (an event for another device): only moves the seq on
            return super().push(frame, seq, t0, again)
        msg = _message(frame)
        if msg is None:
            if seq and self._fetch is not None and frame.startswith(_HEAD) \
                    and self.state is State.OPEN and (seq > self.last_seq or again):
                self._behind = deque()
                self._fetching = asyncio.get_running_loop().create_task(
                    self._fetch_large(seq, t0, again))
                return True
            return False
        if again and seq:  # a send that waits for the acknowledge
            mid = msg.message_id(seq)
            awaiting = self._awaiting
            seqs = awaiting.get(mid)
            if seqs is None:
                awaiting[mid] = [seq]
            else:
                if seq not in seqs:  # (a retried send is pushed again with its seq)
                    seqs.append(seq)
                    if len(seqs) > self.max_queue:
                        del seqs[0]
                awaiting.move_to_end(mid)
            if len(awaiting) > self.max_queue:
                awaiting.popitem(last=False)
            return super().push(pp.with_id(mid, msg.body), seq, t0, again)
        return super().push(msg.body, seq, t0, again)

    async def _fetch_large(self, seq: int, t0: float, again: bool) -> None:
        assert self._fetch is not None
        try:
            frame = await self._fetch(self.identity.user, seq)
        finally:
            behind, self._behind = self._behind or deque(), None
            self._fetching = None
        if frame is not None:
            self.push(frame, seq, t0, again)
        while behind:  # in order; one of them may start the next fetch
            if self._behind is not None:
                self._behind.extend(behind)
                break
            self.push(*behind.popleft())

    def order_from(self, head: int, gaps: GapSource) -> None:
        """Seqs above ``head`` (the user's head before this session was announced: later
        events reach it live or, when their delivery crossed another's, by a gap fill)
        go out in order, each once."""
        self._floor = head
        self._gaps = gaps

    def fill(self, events: list[tuple[int, str]]) -> int:
        """The gap's events as Pushca messages (whole events: see ``whole_events``)."""
        translated = []
        for seq, frame in events:
            msg = _message(frame) if frame else None
            translated.append((seq, msg.body if msg is not None else ""))
        return super().fill(translated)

    def push_reply(self, text: str) -> None:
        """An answer to a command (written as is)."""
        super().push(text)

    def acknowledged(self, message_id: str) -> int:
        """The seq of the message ``message_id`` (0: none is waiting under that id); of
        several waiting under one id, the oldest."""
        seqs = self._awaiting.get(message_id)
        if not seqs:
            return 0
        seq = seqs.pop(0)
        if not seqs:
            del self._awaiting[message_id]
        return seq

    def kick(self, frame: str, reason: str) -> None:
        self.close(CloseCode.KICKED, reason)  # no 'kicked' frame: the close code says it


class PushcaCommands:
    """One Pushca session's commands (see the module docstring); the connection's
    counterpart of :class:`pushgate.hub.ws.Requests`."""

    __slots__ = ("_acks", "_pending", "_tasks", "_transport", "_worker", "node", "session")

    def __init__(self, node: HubNode, session: PushcaSession, transport: Any) -> None:
        self.node = node
        self.session = session
        self._transport = transport
        self._pending: deque[pp.Command] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._acks = 0  # sends with acknowledge waiting (each for up to ack_timeout_ms)

    def on_text(self, text: str) -> None:
        s, node = self.session, self.node
        try:
            cmd = pp.parse_command(text)
        except PushgateError as e:
            self._answer_error(e, pp.command_uuid(text))
            return
        if cmd.name == pp.PING:
            self._done(cmd, "PONG")
        elif cmd.name == pp.ACKNOWLEDGE:
            try:
                seq = s.acknowledged(cmd.message_id)
            except PushgateError as e:
                self._answer_error(e, cmd.uuid)
                return
            if seq:
                if seq > s.acked_seq:
                    s.acked_seq = seq
                node.router.on_ack(s.identity, s.id, seq,
                                   from_store=s.from_store is not None
                                   and s.take_from_store(seq))
                node.metrics.acks.inc()
            self._done(cmd)
        elif cmd.name == pp.SEND_MESSAGE_WITH_ACKNOWLEDGE:
            self._acks += 1
            self._spawn(self._serve_ack(cmd))
            if self._acks >= MAX_PENDING:
                self._transport.pause_reading()  # as many as a native session's sends
        else:
            self._pending.append(cmd)
            if self._worker is None:
                self._worker = self._spawn(self._serve_pending())
            elif len(self._pending) >= MAX_PENDING:
                self._transport.pause_reading()  # backpressure on a send flood

    def cancel(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        self._pending.clear()

    def writable(self) -> None:
        """The connection resumed writing (Pushca's command replies are small: nothing
        waits for it)."""

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    def _resume(self) -> None:
        if len(self._pending) < MAX_PENDING and self._acks < MAX_PENDING \
                and not self._transport.is_closing():
            self._transport.resume_reading()

    async def _serve_ack(self, cmd: pp.Command) -> None:
        try:
            await self._serve(cmd)
        finally:
            self._acks -= 1
            if self._acks == MAX_PENDING - 1:
                self._resume()

    async def _serve_pending(self) -> None:
        pending = self._pending
        try:
            while pending:
                await self._serve(pending.popleft())
                if len(pending) == MAX_PENDING - 1:
                    self._resume()
        finally:
            self._worker = None

    def _done(self, cmd: pp.Command, json_form_reply: str | None = None) -> None:
        """The command was carried out: ``<id>@@ACKNOWLEDGE`` (the JSON form gets
        ``json_form_reply``, if any)."""
        to = cmd.ack_id
        if to is not None:
            self.session.push_reply(pp.acknowledge(to))
        elif json_form_reply is not None:
            self.session.push_reply(json_form_reply)

    def _answer_error(self, e: PushgateError, uuid: str | None) -> None:
        self.node.metrics.error(e.code)
        body = pp.error_body(e)
        self.session.push_reply(pp.response(uuid, body) if uuid is not None else body)

    async def _serve(self, cmd: pp.Command) -> None:
        try:
            await self._send(cmd)
        except PushgateError as e:
            self._answer_error(e, cmd.uuid)
            return
        except Exception:  # a bug: log it, answer it, keep the session
            log.exception("pushca command failed", command=cmd.name)
            self._answer_error(Internal("the server failed to handle this command"), cmd.uuid)
            return
        self._done(cmd)

    async def _send(self, cmd: pp.Command) -> None:
        node, sender = self.node, self.session.identity
        node.client_send_allowed(sender, "command")
        ack = cmd.name == pp.SEND_MESSAGE_WITH_ACKNOWLEDGE
        message = cmd.meta.get("message")
        if message is not None and not isinstance(message, str):
            # Pushca's messages are text; an object went out as is, so that one shaped like
            # a native client send, {"from": {...}, "body": ...}, named any sender it liked
            # to native recipients, who trust "from"
            raise InvalidRequest("'message' must be a string: a client's Pushca message is "
                                 "text", field="message")
        body = from_pushca(cmd.meta, acknowledge=ack)
        flt = body.get("filter")
        if flt is not None:
            ws = flt.get("workspace")
            if ws is not None and ws != sender.workspace:
                raise InvalidRequest("a client may only send inside its own workspace",
                                     field="filter.workSpaceId")
            flt["workspace"] = sender.workspace
        request = parse_send(body, node.send_limits)
        await node.router.send(replace(request, id=client_send_key(sender, request.id)))
