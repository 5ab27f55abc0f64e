"""S1 and S2: HTTP sends of one notification to one random connected user."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, ClassVar

from bench.httpload import HttpPool, encode
from bench.scenarios import (
    Criterion,
    Env,
    Scenario,
    body,
    closed_loop,
    connect_sessions,
    measure,
    open_loop,
    scenario,
    strip_private,
)


class _Unicast(Scenario):
    users: ClassVar[int]

    @property
    def sessions(self) -> int:
        return self.n(self.users, 10)

    def _maker(self, env: Env, prefix: str, users: list[str]) -> Callable[[int, float], bytes]:
        c = env.client
        rnd = random.Random(12345)

        def make(i: int, t: float) -> bytes:
            return encode(c.host, c.port, c.unicast(rnd.choice(users), body(f"{prefix}{i}", t)))
        return make


@scenario
class S1(_Unicast):
    name = "S1"
    title = "unicast: HTTP send of one notification to one random user of 1,000 connected"
    users = 1000
    criteria = [Criterion("cpu_us_per_delivery", "ratio_max", 0.5,
                          "≤ 0.5x baseline"),
                Criterion("cpu_us_per_delivery", "ratio_max", 1.0, "≤ socketio", "socketio"),
                Criterion("cpu_us_per_delivery", "ratio_max", 2.5, "stretch ≤ 2.5x nchan",
                          "nchan"),
                Criterion("lost", "max", 0, "0")]
    extra_metrics = [("http_p99_ms", "HTTP reply p99 ms", "{:.2f}")]

    def __init__(self, scale: float = 1.0, sends: int = 20000, concurrency: int = 32) -> None:
        super().__init__(scale)
        self.sends = self.n(sends, 100)
        self.concurrency = concurrency

    def params(self) -> dict[str, Any]:
        return {"sessions": self.sessions, "sends": self.sends, "concurrency": self.concurrency}

    async def run(self, env: Env) -> dict[str, Any]:
        users = [f"u{i}" for i in range(self.sessions)]
        conn = await connect_sessions(env, users)
        c = env.client
        pool = HttpPool(c.host, c.port, self.concurrency)
        try:
            warm = await measure(env, "w", lambda s: s.sends, lambda log: closed_loop(
                pool, max(100, self.sends // 40), self.concurrency,
                self._maker(env, "w", users), log))
            env.log(f"warm-up: {warm['delivered']}/{warm['expected']} delivered")
            env.log(f"sending {self.sends} unicast notifications ({self.concurrency} clients)")
            m = await measure(env, "m", lambda s: s.sends, lambda log: closed_loop(
                pool, self.sends, self.concurrency, self._maker(env, "m", users), log))
        finally:
            pool.close()
        return {**conn, **strip_private(m)}


@scenario
class S2(_Unicast):
    name = "S2"
    title = "unicast latency: 15,000 connected, 3,000 sends/s for 10 s (open loop)"
    users = 15000
    criteria = [Criterion("p99_ms", "max", 15.0, "≤ 15 ms"),
                Criterion("lost", "max", 0, "0")]
    extra_metrics = [("http_p99_ms", "HTTP reply p99 ms", "{:.2f}"),
                     ("send_lag_p99_ms", "sender lag p99 ms", "{:.2f}")]

    def __init__(self, scale: float = 1.0, rate: float = 3000.0, duration: float = 10.0) -> None:
        super().__init__(scale)
        self.rate = rate
        self.duration = max(1.0, duration * min(1.0, scale))

    def params(self) -> dict[str, Any]:
        return {"sessions": self.sessions, "rate": self.rate, "duration_s": self.duration}

    async def run(self, env: Env) -> dict[str, Any]:
        users = [f"u{i}" for i in range(self.sessions)]
        conn = await connect_sessions(env, users)
        c = env.client
        pool = HttpPool(c.host, c.port, 256)
        try:
            await pool.prewarm(32)
            total = int(self.rate * self.duration)
            await measure(env, "w", lambda s: s.sends, lambda log: open_loop(
                pool, self.rate, int(self.rate / 5), self._maker(env, "w", users), log))
            env.log(f"sending {self.rate:.0f}/s for {self.duration:.0f}s")
            m = await measure(env, "m", lambda s: total, lambda log: open_loop(
                pool, self.rate, total, self._maker(env, "m", users), log))
            m["http_conns_used"] = pool.peak
        finally:
            pool.close()
        return {**conn, **strip_private(m)}
