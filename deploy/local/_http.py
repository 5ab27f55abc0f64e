"""HTTP GET on loopback for readiness checks: never through a proxy from the environment."""

from __future__ import annotations

import urllib.error
import urllib.request

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str, timeout: float = 2.0) -> bytes | None:
    """The body of a 200 answer; ``None`` for any other status, a refusal or a timeout."""
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return resp.read() if resp.status == 200 else None
    except (OSError, urllib.error.URLError):
        return None
