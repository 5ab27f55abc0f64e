"""Ordering and dedupe of stored events (pure: no I/O).

The server may deliver a stored event twice (a reconnect around a send, a fetch
overlapping a live push, a retried send-with-ack), and a client may miss some (the
connection dropped, a large event was only announced by ``head``, the backlog on
connect is bounded). :class:`Inbox` turns whatever arrives into one stream that holds
every stored event exactly once, in seq order, and says when to ``fetch``.

``last_seq`` is the resume point: every stored event with a seq up to it was handed
to the application (or does not exist any more: expired seqs leave holes). It only
moves forward, one contiguous step at a time, so reconnecting with
``after=last_seq`` can never skip an event. Events above a gap wait in a buffer until
a fetch fills the gap; a fetch reply also tells which missing seqs are holes: the
server reads the head before the events, so every seq up to that head that the reply
does not hold has expired.
"""

from __future__ import annotations

from dataclasses import dataclass

from pushgate_client.types import Event


@dataclass(frozen=True, slots=True)
class FetchRequest:
    after: int


class Inbox:
    def __init__(self, last_seq: int = 0) -> None:
        self.last_seq = last_seq
        self.known_head = last_seq  # the highest seq the server said exists
        self.fetching: FetchRequest | None = None  # the fetch in flight on this connection
        self.stalls = 0  # fetch replies in a row that did not move last_seq
        self._buffer: dict[int, Event] = {}

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def is_new(self, seq: int) -> bool:
        return seq > self.last_seq and seq not in self._buffer

    def add(self, event: Event) -> list[Event]:
        """A stored event arrived (live, in the backlog or in a fetch reply). Returns the
        events that are now deliverable, in order (empty for a duplicate)."""
        seq = event.seq
        assert seq is not None, "transient events bypass the inbox"
        if not self.is_new(seq):
            return []
        self._buffer[seq] = event
        return self._drain()

    def on_head(self, head: int) -> None:
        """The server announced a head (``head`` frame, or ``hello`` once the backlog is in)."""
        self.known_head = max(self.known_head, head)

    def next_fetch(self) -> FetchRequest | None:
        """The fetch to send now, if one is needed and none is in flight."""
        if self.fetching is not None:
            return None
        if self._buffer or self.known_head > self.last_seq:
            self.fetching = FetchRequest(self.last_seq)
            return self.fetching
        return None

    def on_fetch_reply(self, events: list[Event], head: int, more: bool) -> list[Event]:
        """A reply to the fetch in flight. Returns the events now deliverable, in order."""
        self.fetching = None
        before = self.last_seq
        for e in events:
            if e.seq is not None and self.is_new(e.seq):
                self._buffer[e.seq] = e
        last = max((e.seq for e in events if e.seq is not None), default=0)
        # every seq up to `covered` is either in the reply (now buffered or already
        # delivered) or gone; the server read `head` before reading the events
        covered = last if more else max(head, last)
        self.known_head = max(self.known_head, head)
        out: list[Event] = []
        if covered > self.last_seq:
            for seq in sorted(s for s in self._buffer if s <= covered):
                out.append(self._buffer.pop(seq))
            self.last_seq = covered
        out += self._drain()
        self.stalls = 0 if self.last_seq > before else self.stalls + 1
        return out

    def on_fetch_failed(self) -> None:
        self.fetching = None
        self.stalls += 1

    def on_disconnect(self) -> None:
        """The connection ended: a fetch in flight will never be answered."""
        self.fetching = None
        self.stalls = 0

    def _drain(self) -> list[Event]:
        out = []
        while (nxt := self.last_seq + 1) in self._buffer:
            out.append(self._buffer.pop(nxt))
            self.last_seq = nxt
        return out
