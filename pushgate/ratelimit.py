"""Token buckets (pure: the caller passes the time).

Used by the hub's per-client-IP limits (:mod:`pushgate.hub.limits`) and by the push
bridge's per-app rate (:mod:`pushgate.router.bridge.worker`).
"""

from __future__ import annotations


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` stored; starts full.
    ``rate <= 0`` = unlimited."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.tokens = self.burst
        self.stamp = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 when granted, else the seconds until one is due (nothing
        taken then: call again after waiting)."""
        if self.rate <= 0:
            return 0.0
        tokens = self.tokens + (now - self.stamp) * self.rate
        self.tokens = tokens if tokens < self.burst else self.burst
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        """Refilled: forgetting this bucket loses nothing (a new one starts full)."""
        return self.rate <= 0 or self.tokens + (now - self.stamp) * self.rate >= self.burst


class Buckets:
    """One token bucket per key (a client IP, an app), made on first use. Refilled
    buckets are forgotten (swept when the table has doubled since the last sweep), so
    memory follows the keys active within one refill and the cost per take stays
    constant."""

    __slots__ = ("buckets", "burst", "rate", "sweep_at")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.buckets: dict[str, TokenBucket] = {}
        self.sweep_at = 1024

    def take(self, key: str, now: float) -> float:
        """:meth:`TokenBucket.take` of ``key``'s bucket."""
        if self.rate <= 0:
            return 0.0
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.sweep_at:
                self.buckets = {k: b for k, b in self.buckets.items() if not b.full(now)}
                self.sweep_at = max(1024, 2 * len(self.buckets))
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self.buckets)
