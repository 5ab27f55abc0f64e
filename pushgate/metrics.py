"""Prometheus metrics of one gateway instance (own registry, so tests can run many)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sessions = Gauge("pushgate_sessions", "Live websocket sessions on this hub.",
                              registry=r)
        self.connects = Counter("pushgate_connects_total", "Websocket sessions opened.",
                                registry=r)
        self.disconnects = Counter("pushgate_disconnects_total",
                                   "Websocket sessions closed, by close code.", ["code"],
                                   registry=r)
        self.sends = Counter("pushgate_sends_total",
                             "Notifications accepted (stored: one per user).", ["kind"], registry=r)
        self.deliveries = Counter("pushgate_deliveries_total",
                                  "Frames queued to live sessions by sends.", registry=r)
        self.delivery_latency = Histogram(
            "pushgate_delivery_latency_seconds",
            "From send request received to frame written to the session's socket.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r)
        self.kicks = Counter("pushgate_kicks_total", "Sessions kicked by the per-user quota.",
                             registry=r)
        self.errors = Counter("pushgate_errors_total", "Errors reported to clients, by code.",
                              ["code"], registry=r)
        self.cleaned = Counter("pushgate_events_expired_total",
                               "Expired events deleted by the TTL cleanup.", registry=r)
        self._sends = {k: self.sends.labels(k) for k in ("stored", "transient", "filter")}

    # router.core.Metrics
    def sent(self, kind: str, n: int) -> None:
        self._sends[kind].inc(n)

    def delivered(self, n: int) -> None:
        if n:
            self.deliveries.inc(n)

    def kicked(self, n: int) -> None:
        self.kicks.inc(n)

    def error(self, code: str) -> None:
        self.errors.labels(code).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
