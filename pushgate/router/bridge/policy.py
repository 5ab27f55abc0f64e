"""Push decisions (pure): whether and when to push an event, whether a due push is
still wanted, and how long to wait before a retry.

* A user with no live session at send time: due at once.
* A user with live sessions: due after ``ack_window_ms``, and only if by then no client
  acked the event (the user's highest acked seq is below it). Window 0 = never push to
  a user who was online.
* A push whose seq was acked meanwhile (the user came online and got it) is skipped.
"""

from __future__ import annotations


def due_at(now: float, online: bool, ack_window_ms: int) -> float | None:
    """When to push an event sent at ``now``; ``None`` = do not push."""
    if not online:
        return now
    if ack_window_ms <= 0:
        return None
    return now + ack_window_ms / 1000


def still_wanted(seq: int, acked_seq: int | None) -> bool:
    """Whether a due push of ``seq`` is still needed: not if a client acked it (acks
    arrive in seq order on a session, so an ack of a later seq covers it too)."""
    return acked_seq is None or acked_seq < seq


def retry_delay(attempt: int, base_s: float, cap_s: float, retry_after_s: float | None,
                jitter: float) -> float:
    """Seconds before retry number ``attempt`` (1 = the first retry): the provider's
    ``Retry-After`` when it gave one, else exponential backoff ``base * 2^(attempt-1)``
    capped at ``cap_s`` with "full jitter" (``jitter`` in [0, 1) scales it to
    50..100 %)."""
    if retry_after_s is not None:
        return max(0.0, retry_after_s)
    delay = min(cap_s, base_s * 2.0 ** max(0, attempt - 1))
    return float(delay * (0.5 + jitter / 2))
