"""One websocket session: identity, lifecycle state and a bounded send queue.

A session writes through its :class:`Outlet` (the connection,
:class:`pushgate.hub.connection.WsConnection`). :meth:`Session.push` never blocks and
never grows without bound: while the outlet takes data (its transport is below the
high-water mark and nothing is queued) a frame goes straight to the socket, encoded as
a websocket frame once per event (:func:`wire_text_frame`), not once per session;
otherwise it waits in the queue, which the outlet drains when the transport resumes
writing. A queue over ``max_queue`` closes the session as a slow consumer
(:data:`CloseCode.SLOW`); the client resumes from the store, so nothing stored is lost.

Order (docs/protocol.md): each stored seq reaches a connection at most once and in
increasing order. ``last_seq`` is the highest seq the connection carried; a frame at or
below it is dropped. A frame past a gap (seq 9 when 7 is the next expected) is held for
the missing seqs, which may be in flight from another router, for at most the gap
source's ``hold_s`` (setting ``gap_hold_ms``); then the gap source
(:class:`pushgate.hub.gaps.GapFiller`) fetches them from the store and :meth:`fill`
delivers everything held in seq order. An empty frame with a seq (a *skip*: an event
for another device of the user) carries nothing and only moves ``last_seq`` on.

States: CATCHING_UP (registered; live frames are held while ``hello`` and the backlog
are queued) → OPEN → CLOSING (the close frame goes out after what is queued; nothing
new is taken) → CLOSED (the connection is gone). A session leaves the hub's registry and
the directory as soon as it starts closing, so a session is either registered and
receiving or on its way out with its close code; nothing reopens a closing session.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Protocol

from pyroaring import BitMap
from websockets.frames import Frame, Opcode

from pushgate.auth import Identity
from pushgate.errors import CloseCode
from pushgate.router.directory.quota import SessionInfo


class State(Enum):
    CATCHING_UP = "catching_up"  # registered; live frames are held until the backlog is sent
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


Observe = Callable[[float], None]


class GapSource(Protocol):
    """Fills a connection's gaps from the store (:class:`pushgate.hub.gaps.GapFiller`)."""

    @property
    def hold_s(self) -> float:
        """How long a frame past a gap waits for the missing seqs before a fetch."""

    def held(self) -> None:
        """A frame started waiting for a gap (metrics)."""

    def request(self, session: Session) -> None:
        """Fetch ``session.gap()`` and hand the events to ``session.fill``."""


class Outlet(Protocol):
    """What a session writes through (the websocket connection)."""

    @property
    def paused(self) -> bool:
        """True while the transport's write buffer is above its high-water mark."""

    def write(self, data: bytes) -> None:
        """Write complete websocket frames to the transport."""

    def send_close(self, code: int, reason: str) -> None:
        """Write the close frame (once) and start the close handshake."""

    def closing(self, session: Session) -> None:
        """The session started closing: it stops receiving (leaves the registry and the
        directory) now, whatever happens to the socket later."""


_last_text: str | None = None
_last_wire = b""


def wire_text_frame(frame: str) -> bytes:
    """``frame`` as a server's (unmasked, unfragmented) websocket text frame, serialized
    by ``websockets.frames`` (no extension is negotiated). The last result is kept: a
    fan-out pushes the same ``str`` to every session in a row."""
    global _last_text, _last_wire
    if frame is _last_text:
        return _last_wire
    _last_wire = Frame(Opcode.TEXT, frame.encode()).serialize(mask=False, extensions=[])
    _last_text = frame
    return _last_wire


class Session:
    #: gap fills bring whole events (a client that cannot fetch a large one by itself)
    whole_events = False

    __slots__ = (
        "_close_reason",
        "_final",
        "_floor",
        "_gap_timer",
        "_gaps",
        "_held",
        "_observe",
        "_out",
        "_queue",
        "_relinked",
        "_waiting",
        "acked_seq",
        "close_code",
        "connected_at",
        "expires_at",
        "from_store",
        "id",
        "identity",
        "info",
        "last_rx",
        "last_seq",
        "max_queue",
        "paused_at",
        "state",
    )

    def __init__(self, identity: Identity, hub: str, max_queue: int, out: Outlet,
                 observe: Observe | None = None, expires_at: float = float("inf"),
                 gaps: GapSource | None = None):
        self.id = os.urandom(16).hex()  # uuid4().hex's shape and randomness, a quarter of its cost
        self.expires_at = expires_at  # token expiry (unix time): closed with TOKEN_EXPIRED then
        self.last_rx = time.monotonic()  # last frame received from the client
        self.identity = identity
        self.connected_at = time.time()
        self.info = SessionInfo(self.id, identity.user, hub, self.connected_at, identity.workspace,
                                identity.device, identity.application)
        self.state = State.CATCHING_UP
        # seqs this session got read from the store (backlog, gap fills, fetch replies),
        # not pushed by a router: an ack-send waiting for one may be on any router
        self.from_store: BitMap | None = None
        self.max_queue = max_queue
        self.last_seq = 0  # highest event seq this connection took (written or queued)
        self.acked_seq = 0
        self.close_code: int | None = None
        self._close_reason = ""
        self._queue: deque[tuple[str, float]] | None = None  # made when first needed
        self._held: list[tuple[str, float, int]] | None = None
        self._final: str | None = None  # a last frame (kicked) held until hello is out
        self._observe = observe
        self._out = out
        self.paused_at = 0.0  # monotonic time the outlet paused with frames waiting (0: not)
        # seqs up to the floor (the head at connect) are not gaps: the client fetches them
        self._floor = 0
        self._gaps = gaps  # None: frames past a gap go out at once (nothing is held)
        self._waiting: dict[int, tuple[str, float]] | None = None  # held past a gap, by seq
        self._gap_timer: asyncio.TimerHandle | None = None
        self._relinked = False  # catching up after a HubLink came back (catch_up)

    @property
    def queued(self) -> int:
        return len(self._queue) if self._queue else 0

    # -- producers (sync, called from the router / registry) --------------------------

    def push(self, frame: str, seq: int = 0, t0: float = 0.0, again: bool = False) -> bool:
        """Send ``frame`` (an encoded server frame; ``seq`` > 0 for stored events; an
        empty frame with a seq is a skip). Returns False if the session did not take it:
        closing, just closed as slow, a skip, or a stored event at or below the highest
        seq this connection already took (each seq at most once per connection, in
        increasing order). A stored event past a gap is held (see the module docstring).
        ``again``: a send-with-ack's event, delivered even below that seq so that it can
        be acknowledged."""
        state = self.state
        if state is State.OPEN:
            if seq:
                last = self.last_seq
                if seq <= last:
                    if not again or not frame:
                        return False
                    return self._write(frame, t0)
                gaps = self._gaps
                if gaps is not None and (self._waiting or seq > max(last, self._floor) + 1):
                    return self._hold(gaps, frame, seq, t0)
                self.last_seq = seq
                if not frame:
                    return False
            return self._write(frame, t0)
        if state is State.CATCHING_UP:
            held = self._held
            if held is None:
                held = self._held = []
            held.append((frame, t0, -seq if again else seq))
            if len(held) > self.max_queue:
                self.close(CloseCode.SLOW, "send queue overflow while catching up")
                return False
            return True
        return False

    def _write(self, frame: str, t0: float) -> bool:
        if not self._queue and not self._out.paused:
            self._out.write(wire_text_frame(frame))
            if t0 and self._observe is not None:
                self._observe(time.perf_counter() - t0)
            return True
        return self._enqueue(frame, t0)

    # -- gaps ----------------------------------------------------------------------------

    def _hold(self, gaps: GapSource, frame: str, seq: int, t0: float) -> bool:
        waiting = self._waiting
        if waiting is None:
            waiting = self._waiting = {}
        if seq in waiting:
            return False
        waiting[seq] = (frame, t0)
        self._release()
        if not self._waiting:
            return bool(frame)
        if len(waiting) > 2 * self.max_queue:
            self.close(CloseCode.SLOW, "send queue overflow while a gap is filled")
            return False
        timer = self._gap_timer
        if timer is None:
            gaps.held()
            self._gap_timer = asyncio.get_running_loop().call_later(
                gaps.hold_s, self._hold_expired)
        elif len(waiting) == self.max_queue + 1:  # too much to wait for: fetch now
            timer.cancel()
            self._gap_timer = asyncio.get_running_loop().call_later(0, self._hold_expired)
        return bool(frame)

    def _release(self) -> None:
        """Send the held frames that follow on without a gap."""
        waiting = self._waiting
        while waiting:
            nxt = max(self.last_seq, self._floor) + 1
            item = waiting.pop(nxt, None)
            if item is None:
                break
            self.last_seq = nxt
            if item[0]:
                self._write(*item)
            if self.state is not State.OPEN:
                return
        if not waiting:
            self._stop_holding()

    def _stop_holding(self) -> None:
        self._waiting = None
        if self._gap_timer is not None:
            self._gap_timer.cancel()
            self._gap_timer = None

    def _hold_expired(self) -> None:
        self._gap_timer = None
        if self.state is State.OPEN and self._waiting and self._gaps is not None:
            self._gaps.request(self)

    def catch_up(self) -> bool:
        """A HubLink came back after it was down: the deliveries that went out on it
        meanwhile are lost, and a connection that gets no later event would never see
        the gap. What the store holds past this connection's last seq is fetched like a
        gap (the first :data:`fetch_limit <pushgate.hub.gaps.GapFiller>` of it; beyond,
        the client sees the gap at the next event and fetches). False: nothing to do."""
        if self.state is not State.OPEN or self._gaps is None:
            return False
        self._relinked = True
        self._gaps.request(self)
        return True

    def gap(self) -> tuple[int, int] | None:
        """The seqs a fill should fetch, ``(after, last)`` (``last`` 0: no bound, a
        catch-up); None: nothing is held."""
        if self.state is not State.OPEN:
            return None
        if self._waiting:
            return max(self.last_seq, self._floor), max(self._waiting)
        if self._relinked:
            return max(self.last_seq, self._floor), 0
        return None

    def fill(self, events: list[tuple[int, str]]) -> int:
        """The store's events of the gap (``(seq, frame)``, any order; empty when the
        fetch failed): send them and every held frame in seq order; a seq neither
        brought is passed over (expired, or beyond what one fetch returns: the client
        sees the gap and fetches). Returns how many seqs were passed over."""
        waiting = self._waiting
        relinked, self._relinked = self._relinked, False
        if self.state is not State.OPEN or not (waiting or relinked):
            return 0
        if waiting is None:
            waiting = self._waiting = {}
        floor = max(self.last_seq, self._floor)
        for seq, frame in events:
            if seq > floor and seq not in waiting:
                waiting[seq] = (frame, 0.0)
        if events:
            self.note_from_store(min(e[0] for e in events), max(e[0] for e in events))
        self._stop_holding()
        passed = 0
        for seq in sorted(waiting):
            passed += seq - max(self.last_seq, self._floor) - 1
            self.last_seq = seq
            frame, t0 = waiting[seq]
            if frame:
                self._write(frame, t0)
            if self.state is not State.OPEN:
                break
        return passed

    def _enqueue(self, frame: str, t0: float) -> bool:
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        if len(queue) >= self.max_queue:
            self.close(CloseCode.SLOW, "send queue overflow: client too slow, fetch after reconnect")
            return False
        queue.append((frame, t0))
        if self._out.paused and not self.paused_at:
            self.paused_at = time.monotonic()
        return True

    @property
    def backed_up(self) -> bool:
        """Frames wait for the socket, or its write buffer is over the high-water mark."""
        return bool(self._queue) or self._out.paused

    def knows(self, seq: int) -> bool:
        """Whether ``seq`` existed for this connection: taken by it, at or below the
        user's head when it opened (history the client may have from elsewhere), or read
        from the store for it. An ack of any other seq acks nothing."""
        if seq <= self.last_seq or seq <= self._floor:
            return True
        return self.from_store is not None and seq in self.from_store

    def note_from_store(self, first: int, last: int) -> None:
        """Seqs ``first..last`` reached this session read from the store (see
        ``from_store``; a span: its holes are never acked)."""
        if self.from_store is None:
            self.from_store = BitMap()
        self.from_store.add_range(first, last + 1)

    def take_from_store(self, seq: int) -> bool:
        """Whether ``seq`` reached this session read from the store (forgotten now: its
        ack is passed on once)."""
        found = self.from_store
        if found is None or seq not in found:
            return False
        found.discard(seq)
        return True

    def push_backlog(self, frame: str, seq: int) -> None:
        """Send a catch-up frame (``hello``, stored events) while CATCHING_UP: written
        now or queued, ahead of the held live frames."""
        if self.state is not State.CATCHING_UP:
            return
        if seq > self.last_seq:
            self.last_seq = seq
        if not self._queue and not self._out.paused:
            self._out.write(wire_text_frame(frame))
        else:
            queue = self._queue
            if queue is None:
                queue = self._queue = deque()
            queue.append((frame, 0.0))

    def open(self, backlog_last_seq: int, head: int = 0) -> None:
        """End catch-up: the backlog up to ``backlog_last_seq`` was sent or queued;
        release held live frames, dropping stored events the backlog already carried.
        Seqs up to ``head`` (the user's head at connect) that the backlog did not carry
        are not gaps the hub fills: the client fetches them (docs/protocol.md). A
        session that started closing meanwhile stays closing."""
        if self.state is not State.CATCHING_UP:
            return
        self.last_seq = max(self.last_seq, backlog_last_seq)
        self._floor = head
        held, self._held = self._held, None
        self.state = State.OPEN
        for frame, t0, seq in held or ():  # (a negative seq: held with again=True)
            self.push(frame, abs(seq), t0, seq < 0)
            if self.state is not State.OPEN:
                break

    def kick(self, frame: str, reason: str) -> None:
        """Close with KICKED after one last ``frame``. While catching up ``hello`` has not
        gone out yet: the frame waits for :meth:`end_catch_up`."""
        if self.state is State.CATCHING_UP:
            self._final = frame
            self.close(CloseCode.KICKED, reason)
        elif self.state is State.OPEN:
            self._enqueue_final(frame)
            self.close(CloseCode.KICKED, reason)

    def end_catch_up(self, hello: str | None) -> None:
        """The connect sequence is over for a session that started closing while it ran
        (kicked, shut down, slow, or ``hello`` is None: connecting failed): send
        ``hello`` (protocol: always the first frame) and a held final frame unless the
        session is slow, then the close frame."""
        if self.state is not State.CLOSING:
            return
        self._held = None
        if hello is not None and self.close_code != CloseCode.SLOW:
            self._enqueue_final(hello)
            if self._final is not None:
                self._enqueue_final(self._final)
        self._final = None
        self._drain_or_close()

    def close(self, code: int, reason: str) -> None:
        """Close the socket with ``code`` after what is already queued (SHUTDOWN, KICKED,
        IDLE …) or at once, dropping the queue (SLOW). The session stops receiving now.
        While catching up, the connect sequence sends the close (:meth:`end_catch_up`)."""
        if self.state is State.CLOSING:
            if code == CloseCode.SLOW and self._queue:  # the write deadline passed while
                self._queue.clear()  # closing: drop the rest, the close frame goes now
                self._drain_or_close()
            return
        if self.state is State.CLOSED:
            return
        catching_up = self.state is State.CATCHING_UP
        self._begin_close(code, reason)
        if code == CloseCode.SLOW:
            self._queue = None
            self._held = None
        if not catching_up:
            self._drain_or_close()

    def abandon(self, code: int) -> None:
        """The connection closed under the session (the client's close frame, a protocol
        error): stop receiving, write nothing more."""
        if self.state is State.OPEN or self.state is State.CATCHING_UP:
            self._begin_close(code, "")
            self._queue = None
            self._held = None
            self._final = None

    def _begin_close(self, code: int, reason: str) -> None:
        self._stop_holding()
        self.state = State.CLOSING
        self.close_code = code
        self._close_reason = reason[:120]
        self._out.closing(self)

    def _enqueue_final(self, frame: str) -> None:
        if not self._queue and not self._out.paused:
            self._out.write(wire_text_frame(frame))
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append((frame, 0.0))

    def _drain_or_close(self) -> None:
        if not self._queue:
            self._out.send_close(self.close_code or CloseCode.NORMAL, self._close_reason)

    # -- the outlet's side -------------------------------------------------------------

    def drain(self) -> None:
        """The transport resumed writing: move queued frames to it until it pauses
        again; a closing session whose queue emptied sends its close frame."""
        queue = self._queue
        out = self._out
        observe = self._observe
        if queue:
            while queue and not out.paused:
                frame, t0 = queue.popleft()
                out.write(wire_text_frame(frame))
                if t0 and observe is not None:
                    observe(time.perf_counter() - t0)
        if queue:  # paused again: the write deadline counts from now
            self.paused_at = time.monotonic()
            return
        self.paused_at = 0.0
        self._queue = None  # idle sessions keep no deque
        if self.state is State.CLOSING:
            self._drain_or_close()

    def closed(self, code: int | None) -> None:
        """The connection is gone (``code``: the close code it ended with, if known)."""
        if self.state is not State.CLOSING:
            self._out.closing(self)
        if self.close_code is None:
            self.close_code = code if code is not None else 1006  # abnormal closure
        self.state = State.CLOSED
        self._queue = None
        self._held = None
        self._stop_holding()
