"""pushgate.metrics: the event-loop histogram reads like a Prometheus one."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from pushgate.metrics import LoopHistogram


def test_loop_histogram_reads_like_a_prometheus_histogram() -> None:
    registry = CollectorRegistry()
    h = LoopHistogram("t_seconds", "test", (0.001, 0.01), registry)
    for v in (0.0005, 0.001, 0.002, 3.0):
        h.observe(v)
    text = generate_latest(registry).decode()
    assert 't_seconds_bucket{le="0.001"} 2.0' in text  # le: value <= bound
    assert 't_seconds_bucket{le="0.01"} 3.0' in text
    assert 't_seconds_bucket{le="+Inf"} 4.0' in text
    assert "t_seconds_count 4.0" in text and "t_seconds_sum 3.0035" in text
    assert "# TYPE t_seconds histogram" in text
