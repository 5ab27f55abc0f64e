"""The router's side of the HubLink streams: one :class:`HubStream` per linked hub.

:class:`LinkedHubs` is the routing core's :class:`~pushgate.router.base.Hubs` in a
router process: ``deliver`` and ``kick`` only enqueue; the queue of each hub is flushed
once per event loop turn as one ``RouterMessage`` (so a burst of sends costs one HubLink
message per hub, not one per event). Broadcasts ask every hub and sum their answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Sequence

from pushgate.logs import get_logger
from pushgate.router.base import Hubs
from pushgate.router.routing import Filter
from pushgate.router.wire import filter_to_pb
from pushgate.rpc import pushgate_pb2 as pb

log = get_logger("pushgate.router.hubs")

BROADCAST_TIMEOUT_S = 2.0
MAX_BATCH = 2000  # deliveries per RouterMessage
# Deliveries and kicks for a hub whose sessions the directory lists but that is not
# linked to this router (yet): held for it this long after the first one, at most this
# many, and sent when it links. Hubs link to a router that (re)started one after the
# other, seconds apart; meanwhile the others route sends through it. After that the hub
# is taken for gone: its sessions' events wait in the store (the hubs' gap fill, a
# client's fetch).
HOLD_S = 10.0
HOLD_MAX = 5000


def wall_time(t0: float) -> float:
    """A ``perf_counter`` instant as unix time (hubs may run on other machines)."""
    return time.time() - (time.perf_counter() - t0)


class HubStream:
    """The outgoing half of one hub's stream, plus what the router knows of that hub.

    ``write``: on the framed transport, the connection's synchronous write (messages go
    out at once); without it (gRPC) they wait in :attr:`queue` for the call's writer."""

    def __init__(self, hub_id: str,
                 write: Callable[[pb.RouterMessage], None] | None = None) -> None:
        self.hub_id = hub_id
        self.queue: asyncio.Queue[pb.RouterMessage | None] = asyncio.Queue()
        self._write = write
        self.pending: list[pb.Delivery] = []
        self.replies: list[pb.SendReply] = []
        self.last_rx = time.monotonic()
        self.closed = False
        self.left = asyncio.Event()  # the hub answered Leaving (or the stream ended)
        self.resync_due = False  # a Resync is scheduled (resync_later)
        self.ended = asyncio.Event()  # closed here: the HubLink call ends
        self.stats: pb.NodeStats | None = None  # the hub's last heartbeat (Status)
        self.match_only = False  # it answers Broadcast.match_only (its Hello says so)

    def send(self, msg: pb.RouterMessage) -> None:
        if self.closed:
            return
        if self._write is not None:
            self._write(msg)
        else:
            self.queue.put_nowait(msg)

    def resync_later(self, delay_s: float = 1.0) -> None:
        """Ask the hub to re-sync in ``delay_s`` (once, however often this is called
        meanwhile): the directory missed a change of its sessions."""
        if self.resync_due or self.closed:
            return
        self.resync_due = True

        def ask() -> None:
            self.resync_due = False
            self.send(pb.RouterMessage(resync=pb.Resync()))

        asyncio.get_running_loop().call_later(delay_s, ask)

    def flush(self) -> None:
        while self.pending:
            items, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
            self.send(pb.RouterMessage(deliveries=pb.Deliveries(items=items)))
        if self.replies:  # after the deliveries they caused
            replies, self.replies = self.replies, []
            self.send(pb.RouterMessage(replies=pb.SendReplies(items=replies)))

    def close(self) -> None:
        self.closed = True
        self.pending.clear()
        self.left.set()
        self.ended.set()
        self.queue.put_nowait(None)


class _Held:
    """What waits for a hub that is not linked: since when, deliveries and kicks in order."""

    __slots__ = ("items", "since")

    def __init__(self, since: float) -> None:
        self.since = since
        self.items: list[pb.Delivery | pb.Kick] = []


class LinkedHubs(Hubs):
    """Every hub linked to this router, by hub id."""

    def __init__(self) -> None:
        self.hubs: dict[str, HubStream] = {}
        # every hub that linked since this router started (None once the router's sweep
        # of dead hubs no longer needs it: pushgate.router.node)
        self.seen: set[str] | None = set()
        self._held: dict[str, _Held] = {}  # hub id -> what waits for its link (HOLD_S)
        self._dirty: set[HubStream] = set()
        self._flush_scheduled = False
        self._rids = itertools.count(1)
        self._broadcasts: dict[int, asyncio.Future[pb.BroadcastDone]] = {}

    # -- streams -----------------------------------------------------------------------------

    def attach(self, hub_id: str,
               write: Callable[[pb.RouterMessage], None] | None = None) -> HubStream:
        old = self.hubs.get(hub_id)
        if old is not None:  # the hub reconnected before its old stream ended
            old.close()
        stream = self.hubs[hub_id] = HubStream(hub_id, write)
        if self.seen is not None:
            self.seen.add(hub_id)
        return stream

    def release_held(self, stream: HubStream) -> int:
        """Send what waited for this hub's link (after the heartbeat that tells it this
        router is up); returns how many deliveries and kicks."""
        held = self._held.pop(stream.hub_id, None)
        if held is None or time.monotonic() - held.since > HOLD_S:
            return 0  # given up: the hub's sessions catch up from the store
        for item in held.items:
            if isinstance(item, pb.Kick):
                stream.flush()  # frames routed to that session before it go first
                stream.send(pb.RouterMessage(kick=item))
            else:
                stream.pending.append(item)
        if stream.pending:
            self._schedule_flush(stream)
        if held.items:
            log.info("sent what waited for the hub's link", hub=stream.hub_id,
                     items=len(held.items))
        return len(held.items)

    def _hold(self, hub: str, item: pb.Delivery | pb.Kick) -> bool:
        """Keep ``item`` for ``hub`` until it links, within :data:`HOLD_S` and
        :data:`HOLD_MAX`; False when past them (the hub is taken for gone)."""
        now = time.monotonic()
        held = self._held.get(hub)
        if held is None:
            if len(self._held) >= 64:  # hubs that never came: forget the oldest
                self._held.pop(next(iter(self._held)))
            held = self._held[hub] = _Held(now)
        if now - held.since > HOLD_S or len(held.items) >= HOLD_MAX:
            # given up: the marker stays until the hub links (no new window)
            held.items.clear()
            held.since = min(held.since, now - HOLD_S - 1.0)
            return False
        held.items.append(item)
        return True

    def detach(self, stream: HubStream) -> None:
        stream.close()
        self._dirty.discard(stream)
        if self.hubs.get(stream.hub_id) is stream:
            del self.hubs[stream.hub_id]

    def _schedule_flush(self, stream: HubStream) -> None:
        self._dirty.add(stream)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, set()
        for stream in dirty:
            stream.flush()

    # -- Hubs --------------------------------------------------------------------------------

    def deliver(self, hub: str, session_ids: Sequence[str], frame: str, seq: int, t0: float,
                want_ack: bool = False) -> int:
        stream = self.hubs.get(hub)
        delivery = pb.Delivery(session_ids=session_ids, frame=frame, seq=seq,
                               sent_at=wall_time(t0), want_ack=want_ack)
        if stream is None or stream.closed:  # not linked (yet): held for its link
            return len(session_ids) if self._hold(hub, delivery) else 0
        stream.pending.append(delivery)
        self._schedule_flush(stream)
        return len(session_ids)

    def reply(self, stream: HubStream, reply: pb.SendReply) -> None:
        """Answer a send the hub batched on its stream (sent with the next flush)."""
        stream.replies.append(reply)
        self._schedule_flush(stream)

    def kick(self, hub: str, session_id: str, by: str | None) -> None:
        stream = self.hubs.get(hub)
        kick = pb.Kick(session_id=session_id, by=by or "")
        if stream is None or stream.closed:  # not linked (yet): held for its link
            self._hold(hub, kick)
            return
        stream.flush()  # frames already routed to that session go first
        stream.send(pb.RouterMessage(kick=kick))

    async def broadcast(self, flt: Filter, frame: str, counter: int, t0: float) -> int:
        streams = [s for s in self.hubs.values() if not s.closed]
        if not streams:
            return 0
        if flt.find_any:
            if all(s.match_only for s in streams):
                return await self._find_any(streams, flt, frame, counter, t0)
            # a hub of an older version among them: ask hubs in turn, from a rotating start
            start = counter % len(streams)
            for s in streams[start:] + streams[:start]:
                done = await self._ask(s, flt, frame, counter, t0)
                if done is not None and done.sessions:
                    return 1
            return 0
        answers = await asyncio.gather(*(self._ask(s, flt, frame, counter, t0) for s in streams))
        return sum(done.sessions for done in answers if done is not None)

    async def _find_any(self, streams: list[HubStream], flt: Filter, frame: str, counter: int,
                        t0: float) -> int:
        """One session of the whole cluster, rotating with ``counter`` over every
        matching session in id order (as one hub rotates over its own): each hub names
        its matches, then the chosen session's hub gets the ``find_any`` broadcast with
        the counter that picks that session among its own."""
        named = await asyncio.gather(*(self._ask(s, flt, "", 0, t0, match_only=True)
                                       for s in streams))
        ids = [list(done.session_ids) if done is not None else [] for done in named]
        everyone = sorted((sid, i) for i, own in enumerate(ids) for sid in own)
        if not everyone:
            return 0
        sid, i = everyone[counter % len(everyone)]
        done = await self._ask(streams[i], flt, frame, ids[i].index(sid), t0)
        return done.sessions if done is not None else 0

    async def _ask(self, stream: HubStream, flt: Filter, frame: str, counter: int,
                   t0: float, match_only: bool = False) -> pb.BroadcastDone | None:
        """The hub's answer to a broadcast; ``None`` if it does not answer in time."""
        rid = next(self._rids)
        fut: asyncio.Future[pb.BroadcastDone] = asyncio.get_running_loop().create_future()
        self._broadcasts[rid] = fut
        stream.flush()
        stream.send(pb.RouterMessage(broadcast=pb.Broadcast(
            rid=rid, filter=filter_to_pb(flt), frame=frame, counter=counter,
            sent_at=wall_time(t0), match_only=match_only)))
        try:
            return await asyncio.wait_for(fut, BROADCAST_TIMEOUT_S)
        except TimeoutError:
            log.warning("hub did not answer a broadcast", hub=stream.hub_id)
            return None
        finally:
            self._broadcasts.pop(rid, None)

    def broadcast_done(self, done: pb.BroadcastDone) -> None:
        fut = self._broadcasts.get(done.rid)
        if fut is not None and not fut.done():
            fut.set_result(done)

    async def leave(self, timeout_s: float) -> None:
        """Tell every linked hub this router is stopping and wait (at most
        ``timeout_s``) until each answered ``Left``: from then on no new work arrives."""
        streams = [s for s in self.hubs.values() if not s.closed]
        for s in streams:
            s.flush()
            s.send(pb.RouterMessage(leaving=pb.Leaving()))
        if streams:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(s.left.wait() for s in streams)),
                                       timeout_s)

    async def sent(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until what is queued for the hubs was written."""
        self._flush()
        queues = [s.queue.join() for s in self.hubs.values() if not s.closed]
        if queues:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*queues), timeout_s)

    def heartbeat(self, ttl_s: float) -> None:
        """Send a heartbeat on every stream; drop the streams silent for ``ttl_s`` (a
        stopped hub: its sessions leave the directory once its key expires)."""
        now = time.monotonic()
        for s in list(self.hubs.values()):
            if now - s.last_rx > ttl_s:
                log.warning("hub link silent; dropping it", hub=s.hub_id)
                self.detach(s)
            else:
                s.send(pb.RouterMessage(heartbeat=pb.Heartbeat()))

    def resync_all(self) -> None:
        for s in list(self.hubs.values()):
            s.send(pb.RouterMessage(resync=pb.Resync()))

    async def close(self) -> None:
        for s in list(self.hubs.values()):
            self.detach(s)
        for fut in self._broadcasts.values():  # (answered: no session took it)
            with contextlib.suppress(asyncio.InvalidStateError):
                fut.set_result(pb.BroadcastDone(sessions=0))
