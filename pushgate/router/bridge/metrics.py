"""Prometheus metrics of the bridge, per provider (``apns`` / ``fcm``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pushgate.metrics import VERSION


class BridgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry or CollectorRegistry(auto_describe=True)
        self.registry = r
        if registry is None:  # the bridge's own /metrics (a gateway's registry has it)
            Gauge("pushgate_build_info", "Always 1; the label says which pushgate runs.",
                  ["version"], registry=r).labels(VERSION).set(1)
        self.providers = Gauge("pushgate_push_providers",
                               "Providers this process's bridge worker sends to (1 each).",
                               ["provider"], registry=r)
        self.sent = Counter("pushgate_push_sent_total", "Pushes the provider accepted.",
                            ["provider"], registry=r)
        self.failed = Counter("pushgate_push_failed_total",
                              "Push attempts the provider refused or that got no answer, "
                              "by reason.", ["provider", "reason"], registry=r)
        self.retried = Counter("pushgate_push_retried_total", "Pushes queued again for a retry.",
                               ["provider"], registry=r)
        self.dropped = Counter("pushgate_push_dropped_total",
                               "Pushes given up (dead token, refused payload, attempts "
                               "exhausted, provider not configured), by reason.",
                               ["provider", "reason"], registry=r)
        self.skipped = Counter("pushgate_push_skipped_total",
                               "Due pushes not sent: acked by a live session, or the user "
                               "has no device.", ["reason"], registry=r)
        self.latency = Histogram("pushgate_push_latency_seconds",
                                 "Provider request time (one device).", ["provider"],
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                          0.5, 1, 2.5, 10), registry=r)
        self.removed_tokens = Counter("pushgate_push_tokens_removed_total",
                                      "Device tokens removed as dead.", ["provider"], registry=r)
