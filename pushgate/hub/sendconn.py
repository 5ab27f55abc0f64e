"""Send connections: connections whose first request is ``POST /v1/notifications``,
answered by the HTTP guard itself with :mod:`pushgate.hub.sendpath` (see
:mod:`pushgate.hub.guard`, "send connections", and docs/http-api.md).

:class:`SendConnection` holds the guard's methods for them: requests are queued as their
heads complete, served by one task each, and answered strictly in order, as uvicorn
writes an ASGI response; reading stops while more than :data:`MAX_WAITING` wait or the
transport's buffer is full.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import httptools

from pushgate.hub.guardstate import (
    CLOSED,
    DONE,
    FIRST,
    HANDING,
    IDLE,
    LINGER,
    SEND,
    Abort,
)
from pushgate.hub.httpreplies import CONNECTION_CLOSE, CONTINUE, default_headers, status_line
from pushgate.hub.sendpath import INTERNAL_ERROR, PATH, Reply, head_error, respond

if TYPE_CHECKING:
    from pushgate.hub.node import HubNode

#: Requests waiting on one send connection before the guard stops reading it
MAX_WAITING = 4

# the line (and logger) uvicorn writes for an exception of the ASGI path
_SERVER_LOG = logging.getLogger("uvicorn.error")


class QueuedSend:
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
        #: not a send: the error reply (status, code, message, field) that ends the
        #: connection, once the replies before it are written
        self.refusal: tuple[int, str, str, str | None] | None = None


class SendConnection:
    """The send-connection half of :class:`pushgate.hub.guard.GuardedHttp` (a mixin: the
    state is the guard's, declared here for the type checker)."""

    # the connection state this half shares with the parser's (the guard declares the rest)
    __slots__ = ("auth", "deadline", "expect", "handover", "held", "kwargs", "length", "loop",
                 "mode", "parsing", "queue", "read_paused", "server_state", "state", "stopping",
                 "timer", "transport", "write_paused")

    node: HubNode
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport | None
    server_state: Any
    kwargs: dict[str, Any]
    state: int
    mode: int
    queue: list[QueuedSend] | None
    parsing: QueuedSend | None
    held: list[bytes] | None
    handover: list[bytes] | None
    auth: bytes | None
    length: bytes | None
    expect: bool
    stopping: bool
    read_paused: bool
    write_paused: bool
    deadline: float | None
    timer: asyncio.TimerHandle | None

    if TYPE_CHECKING:
        def _reject(self, status: int, code: str, message: str, *, retryable: bool,
                    field: str | None = None) -> None: ...

        def _to_uvicorn(self) -> None: ...

        def _set_deadline(self, delay: float) -> None: ...

    def _send(self, parser: httptools.HttpRequestParser) -> None:
        """A ``POST /v1/notifications`` head is complete: queue it (and check its head)."""
        if self.mode == FIRST:
            self.mode = SEND
            self.queue = []
        self.held = None
        auth, length = self.auth, self.length
        reply = head_error(self.node,
                           auth.rstrip(b" \t").decode("latin-1") if auth is not None else None,
                           length.rstrip(b" \t").decode("latin-1") if length is not None
                           else None)
        send = QueuedSend(parser.should_keep_alive() and parser.get_http_version() != "1.0",
                          self.expect and reply is None, reply)
        if reply is None:
            self.parsing = send
        self._enqueue(send)
        if self.mode == CLOSED:  # answered at once, and the connection closes
            raise Abort

    def _refuse_pipelined(self, method: bytes) -> None:
        """Another route pipelined behind a send, in the same chunk: its raw bytes cannot
        be told apart for uvicorn, so it gets a 400 (after the replies before it) and
        the connection ends."""
        self._refuse_after_sends(
            400, "invalid_request",
            f"{method.decode('latin-1')} request pipelined behind POST {PATH} on the same "
            f"connection; a connection that begins with POST {PATH} may pipeline only more "
            f"of those: send other requests after the replies, or on another connection")
        raise Abort

    def _refuse_after_sends(self, status: int, code: str, message: str,
                            field: str | None = None) -> None:
        """End the connection with this error reply (non-retryable), written after the
        replies of the complete sends before it. A send whose body was under way is part
        of what is refused (never served). Nothing more is read; requests held for
        uvicorn are dropped."""
        queue = self.queue
        parsing, self.parsing = self.parsing, None
        if queue and parsing is not None and queue[-1] is parsing:
            del queue[-1]
        if not queue:
            self._reject(status, code, message, retryable=False, field=field)
            return
        refused = QueuedSend(False, False, None)
        refused.refusal = (status, code, message, field)
        self.mode = CLOSED
        self.handover = self.held = None
        self.deadline = None
        self._enqueue(refused)

    def _enqueue(self, send: QueuedSend) -> None:
        queue = self.queue
        assert queue is not None
        queue.append(send)
        if len(queue) == 1:
            self._pump()  # its turn: now
        elif len(queue) > MAX_WAITING and not self.read_paused:
            self._flow()

    def _start(self, send: QueuedSend) -> None:
        """The body of the send whose turn it is is complete: one task serves it."""
        body, send.body = send.body, b""
        task = self.loop.create_task(self._serve(send, body))
        tasks = self.server_state.tasks  # uvicorn's shutdown waits for them
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _serve(self, send: QueuedSend, body: bytes | bytearray) -> None:
        try:
            reply = await respond(self.node, body)
        except Exception as e:
            _SERVER_LOG.error("Exception in ASGI application\n", exc_info=e)
            self.node.metrics.error("internal")
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
                    status, code, message, field = send.refusal
                    self._reject(status, code, message, retryable=False, field=field)
                    return
                if send.expect and not transport.is_closing():
                    transport.write(CONTINUE)  # as uvicorn: when the body is first wanted
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
            if self.mode == HANDING:
                self._to_uvicorn()
            elif self.state == IDLE:
                self._set_deadline(self.kwargs["config"].timeout_keep_alive)

    def _write(self, send: QueuedSend) -> bool:
        """Write the reply as uvicorn writes an ASGI response; False when the connection
        closes after it."""
        reply = send.reply
        transport = self.transport
        assert reply is not None and transport is not None
        keep_alive = send.keep_alive and not self.stopping
        out = [status_line(reply.status), default_headers(self.server_state)]
        for name, value in reply.headers:
            out += (name, b": ", value, b"\r\n")
        if not keep_alive:
            out.append(CONNECTION_CLOSE)
        out += (b"\r\n", reply.body)
        transport.write(b"".join(out))
        self.server_state.total_requests += 1
        if keep_alive and not send.fatal:
            return True
        self.state = DONE  # nothing more is read or answered
        self.mode = CLOSED
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
        pause = self.write_paused or self.mode == HANDING or (
            queue is not None and len(queue) > MAX_WAITING)
        if pause != self.read_paused and self.transport is not None \
                and self.mode <= HANDING and self.state < LINGER:
            self.read_paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()
