"""The admin dashboard's arithmetic (pushgate/hub/adminstats.py): quantiles from
histogram buckets, per-node counter deltas across restarts, rates summed over nodes."""

from __future__ import annotations

from typing import Any

import pytest

from pushgate.hub.adminstats import NodeView, Sampler, deltas, failures_by_reason, quantile


def test_quantile_interpolates_like_histogram_quantile() -> None:
    inf = float("inf")
    # 100 observations: 50 in (0, 0.001], 40 in (0.001, 0.01], 10 in (0.01, 0.1]
    buckets = {0.001: 50.0, 0.01: 90.0, 0.1: 100.0, inf: 100.0}
    assert quantile(buckets, 0.5) == pytest.approx(0.001)
    assert quantile(buckets, 0.7) == pytest.approx(0.001 + 0.009 * 0.5)
    assert quantile(buckets, 0.99) == pytest.approx(0.01 + 0.09 * 0.9)
    assert quantile({0.1: 0.0, inf: 5.0}, 0.5) == 0.1  # all above the last bound
    assert quantile({0.1: 0.0, inf: 0.0}, 0.5) is None
    assert quantile({}, 0.5) is None


def test_deltas_first_sight_and_restart() -> None:
    assert deltas(None, {"a": 5.0}) == {"a": 0.0}  # no history: no increase
    assert deltas({"a": 5.0}, {"a": 8.0, "b": 2.0}) == {"a": 3.0, "b": 2.0}
    assert deltas({"a": 50.0}, {"a": 4.0}) == {"a": 4.0}  # restarted: counts from zero


def test_point_sums_nodes_and_survives_a_restart() -> None:
    s = Sampler(node=None)  # type: ignore[arg-type]  # point() needs no node
    sends = 'pushgate_sends_total{kind="stored"}'
    first = [NodeView("r1", "router", "0.1.0", 1.0, "ok", {sends: 100.0}),
             NodeView("h1", "hub", "0.1.0", 1.0, "ok",
                      {"pushgate_sessions": 3.0, "pushgate_acks_total": 10.0}),
             NodeView("h2", "hub", "0.1.0", 1.0, "ok",
                      {"pushgate_sessions": 2.0, "pushgate_acks_total": 0.0})]
    p0 = s.point(first, 1000.0)
    assert p0["point"]["sends"] == 0 and p0["sessions"] == {"h1": 3, "h2": 2}
    second: list[Any] = [NodeView("r1", "router", "0.1.0", 1.0, "ok", {sends: 110.0}),
                         NodeView("h1", "hub", "0.1.0", 1.0, "ok",
                                  {"pushgate_sessions": 3.0, "pushgate_acks_total": 14.0}),
                         NodeView("h2", "hub", "0.1.0", 1.0, "ok",  # restarted
                                  {"pushgate_sessions": 0.0, "pushgate_acks_total": 1.0})]
    p1 = s.point(second, 1001.0)["point"]
    assert p1["sends"] == 10.0 and p1["acks"] == 5.0 and p1["sessions"] == 3


def test_failures_by_reason() -> None:
    stats = {'pushgate_push_failed_total{provider="apns",reason="BadTopic"}': 2.0,
             'pushgate_push_failed_total{provider="fcm",reason="BadTopic"}': 1.0,
             'pushgate_push_dropped_total{provider="fcm",reason="UNREGISTERED"}': 4.0,
             "pushgate_sends_total": 9.0}
    assert failures_by_reason(stats.items()) == {"failed: BadTopic": 3.0,
                                                 "dropped: UNREGISTERED": 4.0}


def test_push_failures_count_each_failed_attempt_once() -> None:
    """A dead token is counted both as failed (the attempt) and as dropped (the device
    gone): the dashboard's push failures/s are the failed attempts, not their sum."""
    s = Sampler(node=None)  # type: ignore[arg-type]
    sends = 'pushgate_sends_total{kind="stored"}'
    failed = 'pushgate_push_failed_total{provider="fcm",reason="UNREGISTERED"}'
    dropped = 'pushgate_push_dropped_total{provider="fcm",reason="UNREGISTERED"}'
    s.point([NodeView("b1", "bridge", "0.1.0", 1.0, "ok",
                      {sends: 0.0, failed: 0.0, dropped: 0.0})], 1000.0)
    p = s.point([NodeView("b1", "bridge", "0.1.0", 1.0, "ok",
                          {sends: 10.0, failed: 3.0, dropped: 3.0})], 1001.0)["point"]
    assert p["sends"] > 0 and p["push_failures"] == pytest.approx(p["sends"] * 3 / 10)
