"""S3: batch send — one HTTP request addressed to 1,000 users, each of them connected;
pushgate stores one event per user (one group commit) and delivers to each session.
The baseline gets the same list on ``POST /send {"users": [...]}`` and only writes."""

from __future__ import annotations

import time
from typing import Any

from bench.httpload import HttpPool, encode
from bench.scenarios import (
    Criterion,
    Env,
    Scenario,
    body,
    closed_loop,
    connect_sessions,
    measure,
    scenario,
    strip_private,
)


@scenario
class S3(Scenario):
    name = "S3"
    title = "batch send: one request to 1,000 users (each stored in its inbox)"
    criteria = [Criterion("cpu_us_per_delivery", "max", 15.0, "≤ 15 µs"),
                Criterion("lost", "max", 0, "0")]
    extra_metrics = [("http_p50_ms", "HTTP reply p50 ms", "{:.1f}"),
                     ("http_p99_ms", "HTTP reply p99 ms", "{:.1f}")]

    def __init__(self, scale: float = 1.0, requests: int = 60, concurrency: int = 2) -> None:
        super().__init__(scale)
        self.requests = self.n(requests, 5)
        self.concurrency = concurrency

    @property
    def sessions(self) -> int:
        return self.n(1000, 10)

    def params(self) -> dict[str, Any]:
        return {"sessions": self.sessions, "users_per_request": self.sessions,
                "requests": self.requests, "concurrency": self.concurrency}

    async def run(self, env: Env) -> dict[str, Any]:
        users = [f"u{i}" for i in range(self.sessions)]
        conn = await connect_sessions(env, users)
        n = conn["connected"]
        c = env.client

        def maker(prefix: str):  # type: ignore[no-untyped-def]
            def make(i: int, t: float) -> bytes:
                return encode(c.host, c.port, c.multicast(users, body(f"{prefix}{i}", t)))
            return make

        pool = HttpPool(c.host, c.port, self.concurrency)
        try:
            await measure(env, "w", lambda s: 3 * n, lambda log: closed_loop(
                pool, 3, self.concurrency, maker("w"), log))
            env.log(f"{self.requests} requests to {len(users)} users each "
                    f"({self.concurrency} concurrent)")
            t = time.monotonic()
            m = await measure(env, "m", lambda s: self.requests * n, lambda log: closed_loop(
                pool, self.requests, self.concurrency, maker("m"), log))
            env.log(f"sent in {time.monotonic() - t:.1f}s")
        finally:
            pool.close()
        return {**conn, **strip_private(m)}
