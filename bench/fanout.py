"""S4: one filter broadcast to every connected session."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.httpload import HttpPool, encode
from bench.scenarios import (
    Criterion,
    Env,
    Scenario,
    SendLog,
    body,
    connect_sessions,
    measure,
    pct,
    scenario,
    strip_private,
    timed_send,
)


@scenario
class S4(Scenario):
    name = "S4"
    title = "fan-out: one filter broadcast to 5,000 sessions (repeated, spaced)"
    criteria = [Criterion("cpu_us_per_delivery", "ratio_max", 0.6, "≤ 0.6x baseline"),
                Criterion("cpu_us_per_delivery", "ratio_max", 1.2, "≤ 1.2x nchan", "nchan"),
                Criterion("p99_ms", "max", 100.0, "≤ 100 ms"),
                Criterion("p99_ms", "ratio_max", 1.0, "≤ nchan", "nchan"),
                Criterion("lost", "max", 0, "0")]
    extra_metrics = [("broadcast_span_ms", "last delivery ms (median)", "{:.1f}"),
                     ("broadcast_span_max_ms", "last delivery ms (worst)", "{:.1f}"),
                     ("http_p50_ms", "HTTP reply p50 ms", "{:.1f}")]

    def __init__(self, scale: float = 1.0, broadcasts: int = 20, gap: float = 0.1) -> None:
        super().__init__(scale)
        self.broadcasts = broadcasts
        self.gap = gap

    @property
    def sessions(self) -> int:
        return self.n(5000, 10)

    def params(self) -> dict[str, Any]:
        return {"sessions": self.sessions, "broadcasts": self.broadcasts, "gap_s": self.gap}

    async def _broadcasts(self, env: Env, pool: HttpPool, prefix: str, count: int,
                          sessions: int, log: SendLog) -> None:
        c = env.client
        for k in range(count):
            raw = encode(c.host, c.port, c.broadcast(body(f"{prefix}{k}", time.time())))
            await timed_send(pool, raw, log)
            want = (k + 1) * sessions
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                st = await env.workers.stats()
                if st["received"] >= want:
                    break
                await asyncio.sleep(0.005)
            await asyncio.sleep(self.gap)

    async def run(self, env: Env) -> dict[str, Any]:
        users = [f"u{i}" for i in range(self.sessions)]
        conn = await connect_sessions(env, users, fanout=True)
        n = conn["connected"]
        c = env.client
        pool = HttpPool(c.host, c.port, 2)
        try:
            await measure(env, "w", lambda s: 2 * n,
                          lambda log: self._broadcasts(env, pool, "w", 2, n, log))
            env.log(f"{self.broadcasts} broadcasts to {n} sessions")
            m = await measure(env, "m", lambda s: self.broadcasts * n,
                              lambda log: self._broadcasts(env, pool, "m", self.broadcasts,
                                                           n, log))
        finally:
            pool.close()
        spans = sorted(mx for _, mx in m["_per_id"].values())
        counts = [cnt for cnt, _ in m["_per_id"].values()]
        m["broadcast_span_ms"] = pct(spans, 0.5) * 1000
        m["broadcast_span_max_ms"] = spans[-1] * 1000 if spans else float("nan")
        m["broadcast_spans_ms"] = [round(v[1] * 1000, 1) for _, v in
                                   sorted(m["_per_id"].items(), key=lambda kv: int(kv[0][1:]))]
        # fan-out rate: sessions reached per second within one broadcast (median)
        rates = sorted(cnt / mx for cnt, mx in m["_per_id"].values() if mx > 0)
        m["deliveries_per_s"] = pct(rates, 0.5)
        m["min_sessions_reached"] = min(counts) if counts else 0
        return {**conn, **strip_private(m)}
