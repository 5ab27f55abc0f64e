"""What the admin dashboard shows, sampled once a second while someone watches.

Every process keeps its own Prometheus counters (:class:`~pushgate.metrics.GatewayMetrics`).
The sampler reads them: in embedded mode this process's registry; in the cluster this
hub's registry plus each router's ``Gateway.Status`` (the router's counters and the last
heartbeat of every hub linked to it). Rates come from per-node deltas (a node that
restarted counts from zero again, a node that vanished stops counting), summed over
the nodes and averaged over :data:`RATE_WINDOW` samples; delivery latency p50/p99 from
the summed histogram buckets' deltas over :data:`LATENCY_WINDOW` samples.

Nothing runs while nobody watches: the sampler starts with the first event stream and
stops with the last one (the history it gathered is kept for the next viewer).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from grpc import aio

from pushgate.logs import get_logger
from pushgate.metrics import VERSION
from pushgate.rpc import pushgate_pb2 as pb
from pushgate.tasks import cancel_and_wait

if TYPE_CHECKING:
    from pushgate.hub.node import HubNode

log = get_logger("pushgate.hub.admin")

INTERVAL_S = 1.0
HISTORY = 600  # samples kept: the last 10 minutes
RATE_WINDOW = 5
LATENCY_WINDOW = 10
STATUS_TIMEOUT_S = 1.5
#: a hub the routers no longer list (dead, swept from the directory) stays on the page
#: as *down* this long: an operator sees that a hub died, not one hub fewer
GONE_SHOWN_S = 120.0

SENDS = "pushgate_sends_total"
DELIVERIES = "pushgate_deliveries_total"
ACKS = "pushgate_acks_total"
PUSHED = "pushgate_push_sent_total"
PUSH_FAILED = "pushgate_push_failed_total"
PUSH_DROPPED = "pushgate_push_dropped_total"
LATENCY_BUCKET = "pushgate_delivery_latency_seconds_bucket"


@dataclass
class NodeView:
    """One process as the dashboard lists it."""

    id: str
    kind: str  # gateway (embedded: hub + router + store) | hub | router | bridge
    version: str
    started_at: float
    health: str  # ok | down | stale | stopping
    stats: dict[str, float] = field(default_factory=dict)
    address: str = ""
    detail: str = ""

    def to_dict(self, now: float) -> dict[str, Any]:
        sessions = self.stats.get("pushgate_sessions")
        return {"id": self.id, "kind": self.kind, "version": self.version,
                "health": self.health, "address": self.address, "detail": self.detail,
                "uptime_s": round(now - self.started_at) if self.started_at else None,
                "sessions": int(sessions) if sessions is not None and self.kind in
                ("hub", "gateway") else None}


def metric_name(key: str) -> str:
    return key.split("{", 1)[0]


def label(key: str, name: str) -> str | None:
    marker = f'{name}="'
    start = key.find(marker)
    if start < 0:
        return None
    start += len(marker)
    return key[start:key.index('"', start)]


def sum_of(stats: Mapping[str, float], name: str) -> float:
    return sum(v for k, v in stats.items() if metric_name(k) == name)


def deltas(prev: Mapping[str, float] | None, cur: Mapping[str, float]) -> dict[str, float]:
    """Per-series increase of one node's counters; a series that went down (the node
    restarted) counts from zero."""
    out: dict[str, float] = {}
    for k, v in cur.items():
        before = prev.get(k, 0.0) if prev is not None else v  # first sight: no increase
        out[k] = v - before if v >= before else v
    return out


def quantile(buckets: Mapping[float, float], q: float) -> float | None:
    """``histogram_quantile`` of cumulative bucket counts ``{upper bound: count}``
    (linear inside the bucket, the last finite bound for +Inf); None without data."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for b in bounds:
        n = buckets[b]
        if n >= rank:
            if b == float("inf"):
                return lower
            return lower + (b - lower) * ((rank - below) / (n - below) if n > below else 0)
        lower, below = b, n
    return lower


def failures_by_reason(stats: Iterable[tuple[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in stats:
        name = metric_name(k)
        if name in (PUSH_FAILED, PUSH_DROPPED):
            reason = f"{'dropped' if name == PUSH_DROPPED else 'failed'}: {label(k, 'reason')}"
            out[reason] = out.get(reason, 0.0) + v
    return out


class Sampler:
    """Samples the cluster (or the embedded gateway) every :data:`INTERVAL_S` while at
    least one viewer is subscribed; each viewer gets every sample on its queue."""

    def __init__(self, node: HubNode) -> None:
        self.node = node
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.latest: dict[str, Any] | None = None
        self._viewers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._task: asyncio.Task[None] | None = None
        self._prev: dict[str, dict[str, float]] = {}  # node id -> its last stats
        # hub id -> (when last listed, monotonic; the view then): gone ones shown as down
        self._hubs_seen: dict[str, tuple[float, NodeView]] = {}
        self._window: deque[tuple[float, dict[str, float]]] = deque(
            maxlen=max(RATE_WINDOW, LATENCY_WINDOW))

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=100)
        self._viewers.add(q)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._viewers.discard(q)
        if not self._viewers and self._task is not None:
            self._task.cancel()
            self._task = None

    async def close(self) -> None:
        self._viewers.clear()
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self._prev.clear()  # the gap since the last viewer is not one sample's increase
        self._window.clear()
        while True:
            started = loop.time()
            try:
                sample = self.point(await self.collect(), time.time())
            except Exception:  # keep sampling; the next round may succeed
                log.exception("admin dashboard sample failed")
            else:
                self.latest = sample
                self.history.append(sample["point"])
                for q in list(self._viewers):
                    with contextlib.suppress(asyncio.QueueFull):  # a stuck viewer misses some
                        q.put_nowait(sample)
            await asyncio.sleep(max(0.05, INTERVAL_S - (loop.time() - started)))

    # -- collecting ----------------------------------------------------------------------------

    def _own(self) -> NodeView:
        node = self.node
        health = "ok" if node.ready else ("stopping" if node.shutting_down else
                                          "no_router" if node.started else "down")
        return NodeView(node.hub_id, "hub" if node.cluster else "gateway", VERSION,
                        node.metrics.started_at, health, node.metrics.snapshot())

    async def collect(self) -> list[NodeView]:
        own = self._own()
        nodes = [own]
        if self.node.routers is None:
            worker = self.node.backend.push_worker if self.node.backend else None
            if worker is not None:
                nodes.append(NodeView(f"{own.id}/bridge", "bridge", VERSION, own.started_at,
                                      "ok", detail=", ".join(sorted(worker.providers))))
            return nodes
        routers = self.node.routers
        conns = list(routers.conns)
        replies = await asyncio.gather(*(self._status(c) for c in conns))
        hubs: dict[str, tuple[float, pb.NodeStats]] = {}
        ttl = self.node.settings.hub_heartbeat_ttl_s
        for conn, reply in zip(conns, replies, strict=True):
            if reply is None:
                nodes.append(NodeView(conn.address, "router", "", 0.0, "down",
                                      address=conn.address))
                continue
            r = reply.router
            stats = dict(r.stats)
            nodes.append(NodeView(r.id, "router", r.version, r.started_at,
                                  "stopping" if conn.leaving else "ok", stats,
                                  address=conn.address,
                                  detail=f"{int(stats.get('pushgate_linked_hubs', 0))} hubs"))
            providers = sorted(label(k, "provider") or "" for k in stats
                               if metric_name(k) == "pushgate_push_providers")
            if providers:
                nodes.append(NodeView(f"{r.id}/bridge", "bridge", r.version, r.started_at,
                                      "ok", detail=", ".join(providers)))
            for h in reply.hubs:
                # the freshest copy that has stats: a router that just restarted lists a
                # hub it heard from but has no stats of yet (its sessions were left out)
                if h.id != own.id and (h.id not in hubs or (not h.stats, h.age_s) <
                                       (not hubs[h.id][1].stats, hubs[h.id][0])):
                    hubs[h.id] = (h.age_s, h)
        now = time.monotonic()
        listed = []
        for hub_id, (age, h) in sorted(hubs.items()):
            view = NodeView(hub_id, "hub", h.version, h.started_at,
                            "ok" if age < ttl else "stale", dict(h.stats),
                            detail=f"heard {age:.1f} s ago")
            listed.append(view)
            self._hubs_seen[hub_id] = (now, view)
        if any(r is not None for r in replies):  # (no router answered: nothing is known)
            for hub_id, (seen, view) in sorted(self._hubs_seen.items()):
                if hub_id in hubs:
                    continue
                if now - seen > GONE_SHOWN_S:
                    del self._hubs_seen[hub_id]
                    continue
                listed.append(NodeView(hub_id, "hub", view.version, view.started_at, "down",
                                       detail=f"not listed by the routers for "
                                              f"{now - seen:.0f} s"))
        return nodes + listed

    async def _status(self, conn: Any) -> pb.StatusReply | None:
        if not conn.up or conn.gateway is None:
            return None
        try:
            reply: pb.StatusReply = await conn.gateway.Status(
                pb.StatusRequest(), metadata=self.node.routers.metadata,  # type: ignore[union-attr]
                timeout=STATUS_TIMEOUT_S)
            return reply
        except aio.AioRpcError:
            return None

    # -- aggregating ---------------------------------------------------------------------------

    def point(self, nodes: list[NodeView], now: float) -> dict[str, Any]:
        """One sample: the nodes, and the chart point (rates over the window)."""
        increase: dict[str, float] = {}
        seen = set()
        for n in nodes:
            if not n.stats:
                continue
            seen.add(n.id)
            for k, d in deltas(self._prev.get(n.id), n.stats).items():
                if d:
                    increase[k] = increase.get(k, 0.0) + d
            self._prev[n.id] = n.stats
        for gone in set(self._prev) - seen:
            del self._prev[gone]
        self._window.append((now, increase))
        window = list(self._window)

        def rate(name: str) -> float:
            recent = window[-RATE_WINDOW:]
            span = max(INTERVAL_S, now - recent[0][0]) if len(recent) > 1 else INTERVAL_S
            total = sum(sum_of(inc, name) for _, inc in recent[1:] or recent)
            return round(total / span, 2)

        buckets: dict[float, float] = {}
        for _, inc in window[-LATENCY_WINDOW:]:
            for k, v in inc.items():
                if metric_name(k) == LATENCY_BUCKET:
                    le = label(k, "le") or "+Inf"
                    bound = float("inf") if le == "+Inf" else float(le)
                    buckets[bound] = buckets.get(bound, 0.0) + v
        p50, p99 = quantile(buckets, 0.5), quantile(buckets, 0.99)
        all_stats = [kv for n in nodes for kv in n.stats.items()]
        sessions = {n.id: int(n.stats.get("pushgate_sessions", 0)) for n in nodes
                    if n.kind in ("hub", "gateway") and n.stats}
        queue = max((n.stats.get("pushgate_push_queue", 0.0) for n in nodes if n.stats),
                    default=0.0)
        point = {
            "t": round(now, 3),
            "sessions": sum(sessions.values()),
            "sends": rate(SENDS), "deliveries": rate(DELIVERIES), "acks": rate(ACKS),
            "pushes": rate(PUSHED),
            # failed attempts (a dead token is also counted as dropped: not twice here)
            "push_failures": rate(PUSH_FAILED),
            "push_queue": int(queue),
            "p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "p99_ms": None if p99 is None else round(p99 * 1000, 3),
        }
        return {"t": point["t"], "nodes": [n.to_dict(now) for n in nodes],
                "sessions": sessions, "failures": failures_by_reason(all_stats),
                "point": point}
