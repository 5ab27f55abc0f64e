"""Token expiry, read from the JWT without verifying it (the server verifies)."""

from __future__ import annotations

import base64
import json


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (unix seconds), or None when it cannot be read."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp")
    except (IndexError, ValueError, AttributeError):
        return None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def refresh_at(obtained_at: float, expires_at: float, margin: float) -> float:
    """When to replace a token: ``margin`` seconds before it expires, but never earlier
    than half-way through its life (a short-lived token still gets used)."""
    lifetime = max(0.0, expires_at - obtained_at)
    return expires_at - min(margin, lifetime / 2)


REFRESH_SPREAD = 0.5  # the refresh window reaches this fraction of the margin further back


def refresh_window(obtained_at: float, expires_at: float, margin: float) -> tuple[float, float]:
    """The window a token refresh is picked in (uniformly, so that clients whose tokens
    were minted together do not all come back at once): from ``1.5 * margin`` to
    ``margin`` before ``exp``, both ends moved up to half the token's life if they are
    earlier. A token that lives ``2 * margin`` or less is refreshed at half its life."""
    half = obtained_at + max(0.0, expires_at - obtained_at) / 2
    lo = max(half, expires_at - margin * (1 + REFRESH_SPREAD))
    hi = max(half, expires_at - margin)
    return lo, hi
