"""One websocket session: identity, lifecycle state and a bounded send queue.

Frames are queued with :meth:`Session.push` (never blocks, never grows without
bound); one writer task per session moves them to the socket. When the queue is
full the session is closed with :data:`CloseCode.SLOW`; the client resumes from
the store after reconnecting, so nothing stored is lost.

Direct writes: a session whose queue is empty and whose writer is idle writes a live
frame straight to its socket (``direct``, see :func:`pushgate.hub.ws.direct_writer`)
instead of waking its writer task: the frame is encoded as a websocket frame once per
event (:func:`wire_text_frame`), not once per session. The queue and the writer take
over whenever the socket cannot take the frame at once (its write buffer is above the
high-water mark, or it is closing) or frames are already waiting, so order and the
slow-consumer limit are kept.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from enum import Enum

from pushgate.auth import Identity
from pushgate.errors import CloseCode
from pushgate.router.directory.quota import SessionInfo


class State(Enum):
    CATCHING_UP = "catching_up"  # registered; live frames are held until the backlog is sent
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


SendText = Callable[[str], Awaitable[None]]
Close = Callable[[int, str], Awaitable[None]]
Observe = Callable[[float], None]
# writes one complete websocket frame to the socket now; False = not now (use the queue)
Direct = Callable[[bytes], bool]

_last_text: str | None = None
_last_wire = b""


def wire_text_frame(frame: str) -> bytes:
    """``frame`` as an unmasked, unfragmented websocket text frame (RFC 6455 5.2: what a
    server sends; no extension is negotiated, per-message deflate is off). The last
    result is kept: a fan-out pushes the same ``str`` to every session in a row."""
    global _last_text, _last_wire
    if frame is _last_text:
        return _last_wire
    data = frame.encode()
    n = len(data)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 65536:
        head = b"\x81\x7e" + n.to_bytes(2, "big")
    else:
        head = b"\x81\x7f" + n.to_bytes(8, "big")
    _last_text, _last_wire = frame, head + data
    return _last_wire


class Session:
    __slots__ = (
        "_close_reason",
        "_direct",
        "_held",
        "_observe",
        "_queue",
        "_wakeup",
        "_writing",
        "acked_seq",
        "close_code",
        "connected_at",
        "expires_at",
        "id",
        "identity",
        "info",
        "last_rx",
        "last_seq",
        "max_queue",
        "state",
    )

    def __init__(self, identity: Identity, hub: str, max_queue: int, observe: Observe | None = None,
                 expires_at: float = float("inf")):
        self.id = uuid.uuid4().hex
        self.expires_at = expires_at  # token expiry (unix time): closed with TOKEN_EXPIRED then
        self.last_rx = time.monotonic()  # last frame received from the client
        self.identity = identity
        self.connected_at = time.time()
        self.info = SessionInfo(self.id, identity.user, hub, self.connected_at, identity.workspace,
                                identity.device, identity.application)
        self.state = State.CATCHING_UP
        self.max_queue = max_queue
        self.last_seq = 0  # highest event seq written to this client (for catch-up dedupe)
        self.acked_seq = 0
        self.close_code: int | None = None
        self._close_reason = ""
        self._queue: deque[tuple[str, float, int]] = deque()
        self._held: list[tuple[str, float, int]] = []
        self._wakeup = asyncio.Event()
        self._observe = observe
        self._direct: Direct | None = None
        self._writing = False  # the writer took a frame off the queue and is sending it

    def set_direct(self, direct: Direct | None) -> None:
        """Let :meth:`push` write live frames with ``direct`` while nothing is queued."""
        self._direct = direct

    # -- producers (sync, called from the router / registry) --------------------------

    def push(self, frame: str, seq: int = 0, t0: float = 0.0) -> bool:
        """Queue ``frame`` (an encoded server frame; ``seq`` > 0 for stored events).
        Returns False if the session is closing or was just closed as slow."""
        if self.state is State.CATCHING_UP:
            self._held.append((frame, t0, seq))
            if len(self._held) > self.max_queue:
                self.close(CloseCode.SLOW, "send queue overflow while catching up")
                return False
            return True
        if self.state is not State.OPEN:
            return False
        if self._direct is not None and not self._queue and not self._writing \
                and self._direct(wire_text_frame(frame)):
            if seq > self.last_seq:
                self.last_seq = seq
            if t0 and self._observe is not None:
                self._observe(time.perf_counter() - t0)
            return True
        if len(self._queue) >= self.max_queue:
            self.close(CloseCode.SLOW, "send queue overflow: client too slow, fetch after reconnect")
            return False
        self._queue.append((frame, t0, seq))
        self._wakeup.set()
        return True

    def open(self, backlog_last_seq: int) -> None:
        """End catch-up: the backlog up to ``backlog_last_seq`` was queued; release held
        live frames, dropping stored events the backlog already carried."""
        self.last_seq = max(self.last_seq, backlog_last_seq)
        held, self._held = self._held, []
        self.state = State.OPEN
        for frame, t0, seq in held:
            if seq and seq <= backlog_last_seq:
                continue
            self.push(frame, seq, t0)

    def push_backlog(self, frame: str, seq: int) -> None:
        """Queue a catch-up frame (bypasses the hold, counts against the queue)."""
        self._queue.append((frame, 0.0, seq))
        self._wakeup.set()

    def close(self, code: int, reason: str) -> None:
        """Ask the writer to close the socket after what is already queued (for SHUTDOWN
        and KICKED: after a final frame the caller queued) or at once (SLOW)."""
        if self.state in (State.CLOSING, State.CLOSED):
            return
        self.state = State.CLOSING
        self.close_code = code
        self._close_reason = reason
        if code == CloseCode.SLOW:
            self._queue.clear()
        self._wakeup.set()

    def push_final(self, frame: str) -> None:
        """Queue one last frame (e.g. ``kicked``) regardless of state, before close()."""
        self._queue.append((frame, 0.0, 0))
        self._wakeup.set()

    # -- the writer task ---------------------------------------------------------------

    async def run_writer(self, send: SendText, close: Close) -> None:
        """Write queued frames until the session is closed; then close the socket."""
        queue = self._queue
        observe = self._observe
        try:
            while True:
                while queue:
                    self._writing = True
                    frame, t0, seq = queue.popleft()
                    await send(frame)
                    if seq > self.last_seq:
                        self.last_seq = seq
                    if t0 and observe is not None:
                        observe(time.perf_counter() - t0)
                self._writing = False
                if self.state in (State.CLOSING, State.CLOSED):
                    break
                self._wakeup.clear()
                await self._wakeup.wait()
            if self.close_code is not None:
                await close(self.close_code, self._close_reason[:120])
        finally:
            self.state = State.CLOSED
