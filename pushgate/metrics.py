"""Prometheus metrics of one gateway instance (own registry, so tests can run many)."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric


class LoopHistogram:
    """A Prometheus histogram for the event loop's hot path (one observation per frame
    written): plain counters and a bisect per observation, read as a normal histogram at
    scrape time. ``prometheus_client.Histogram`` takes a lock per bucket and per sum on
    every ``observe`` (~5 µs, a quarter of a fan-out delivery's CPU); this one must only
    be written from one thread (the event loop's)."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float],
                 registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self._bounds = sorted(float(b) for b in buckets)
        self._counts = [0] * (len(self._bounds) + 1)  # the last one: above every bound
        self._sum = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1  # le: value <= bound
        self._sum += value

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation)
        total, buckets = 0, []
        for bound, n in zip([*self._bounds, float("inf")], self._counts, strict=True):
            total += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        family.add_metric([], buckets, self._sum)
        yield family


def _version() -> str:
    try:
        return metadata.version("pushgate")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare tree
        return "unknown"


VERSION = _version()


class LoopCounter:
    """A Prometheus counter for one-thread hot paths (one increment per client ack): a
    plain integer, no lock (``prometheus_client.Counter`` takes one per ``inc``)."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self.name = name  # without _total, as prometheus_client names counter families
        self.documentation = documentation
        self.value = 0
        registry.register(self)

    def inc(self) -> None:
        self.value += 1

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.value)


class GatewayMetrics:
    """The metrics of a gateway or hub (``sessions=True``) or of a router
    (``sessions=False``: no websocket sessions, so the session metrics are not exported
    — docs/operations.md)."""

    def __init__(self, *, sessions: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.started_at = time.time()
        r = self.registry
        Gauge("pushgate_build_info", "Always 1; the label says which pushgate runs.",
              ["version"], registry=r).labels(VERSION).set(1)
        # a router's would stay 0 for ever: kept off its registry (never scraped)
        s = r if sessions else CollectorRegistry(auto_describe=True)
        self.sessions = Gauge("pushgate_sessions", "Live websocket sessions on this hub.",
                              registry=s)
        self.connects = Counter("pushgate_connects_total", "Websocket sessions opened.",
                                registry=s)
        self.disconnects = Counter("pushgate_disconnects_total",
                                   "Websocket sessions closed, by close code.", ["code"],
                                   registry=s)
        self.sends = Counter("pushgate_sends_total",
                             "Notifications accepted (stored: one per user).", ["kind"], registry=r)
        self.deliveries = Counter("pushgate_deliveries_total",
                                  "Frames queued to live sessions by sends.", registry=r)
        self.delivery_latency = LoopHistogram(
            "pushgate_delivery_latency_seconds",
            "From send request received to frame written to the session's socket.",
            (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), s)
        self.kicks = Counter("pushgate_kicks_total", "Sessions kicked by the per-user quota.",
                             registry=r)
        self.errors = Counter("pushgate_errors_total", "Errors reported to clients, by code.",
                              ["code"], registry=r)
        self.acks = LoopCounter("pushgate_acks",
                                "Acks received from clients (one per ack frame).", s)
        self.push_queue = Gauge("pushgate_push_queue",
                                "Pushes waiting in the store's outbox (all bridge workers "
                                "of the store; sampled every few seconds).", registry=r)
        self.cleaned = Counter("pushgate_events_expired_total",
                               "Expired events deleted by the TTL cleanup.",
                               registry=r)
        self.gaps_held = Counter(
            "pushgate_gaps_held_total",
            "Stored events held on a connection because an earlier seq was missing.",
            registry=s)
        self.gap_fetches = Counter(
            "pushgate_gap_fetches_total",
            "Store fetches for seqs missing after gap_hold_ms (one per user and round).",
            registry=s)
        self.gap_seqs_fetched = Counter(
            "pushgate_gap_seqs_fetched_total",
            "Events those fetches brought (sent to the connections that missed them).",
            registry=s)
        self.gap_seqs_passed = Counter(
            "pushgate_gap_seqs_passed_total",
            "Missing seqs passed over (expired, or beyond one fetch: the client fetches).",
            registry=s)
        self._sends = {k: self.sends.labels(k) for k in ("stored", "transient", "filter")}

    def count_router_links(self, links: Callable[[], float]) -> None:
        """A cluster hub's ``pushgate_router_links`` (absent elsewhere: no false alert)."""
        Gauge("pushgate_router_links", "Routers this cluster hub is linked to (0: it takes "
              "no sessions or sends).", registry=self.registry).set_function(links)

    def count_linked_hubs(self, hubs: Callable[[], float]) -> None:
        """A router's ``pushgate_linked_hubs``."""
        Gauge("pushgate_linked_hubs", "Hubs linked to this router by a HubLink stream.",
              registry=self.registry).set_function(hubs)

    # router.core.Metrics
    def sent(self, kind: str, n: int) -> None:
        self._sends[kind].inc(n)

    def delivered(self, n: int) -> None:
        if n:
            self.deliveries.inc(n)

    def acked(self) -> None:
        self.acks.inc()

    def kicked(self, n: int) -> None:
        self.kicks.inc(n)

    def error(self, code: str) -> None:
        self.errors.labels(code).inc()

    def snapshot(self) -> dict[str, float]:
        """Every sample of the registry as ``{"name{label=\"v\",...}": value}`` (no
        ``_created``): what a hub's heartbeat and a router's Status carry, and what the
        admin dashboard turns into rates."""
        out: dict[str, float] = {}
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                out[series_key(sample.name, sample.labels)] = sample.value
        return out

    def render(self) -> bytes:
        return generate_latest(self.registry)


def series_key(name: str, labels: dict[str, str]) -> str:
    """``name`` or ``name{a="x",b="y"}`` (labels sorted), as in the Prometheus text format."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"
