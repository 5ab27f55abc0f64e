"""Reconnect delays: exponential backoff with full jitter (pure).

``delay(attempt) = uniform(0, min(cap, base * 2 ** attempt))``: after an outage every
client waits a different random time, so a restarted server sees its clients come back
spread over the whole window instead of all at once.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, base: float = 0.5, cap: float = 30.0,
                 rng: random.Random | None = None) -> None:
        if base <= 0 or cap < base:
            raise ValueError("need 0 < base <= cap")
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def window(self, attempt: int | None = None) -> float:
        """Upper bound of the delay for ``attempt`` (default: the current one)."""
        n = self.attempt if attempt is None else attempt
        return float(min(self.cap, self.base * 2.0 ** min(n, 62)))

    def next(self) -> float:
        """The delay before the next try; counts the attempt."""
        d = self._rng.uniform(0, self.window())
        self.attempt += 1
        return d

    def jitter(self) -> float:
        """A delay within the first window (reconnects that need no backoff, e.g. after a
        token refresh, still should not all happen in the same instant)."""
        return self._rng.uniform(0, self.base)

    def reset(self) -> None:
        self.attempt = 0
