"""The provider interface: one push to one device token, and what came of it.

Result kinds (each provider maps its own status codes and reasons onto them):

========  ====================================================  ===========================
kind      examples                                              the worker then
========  ====================================================  ===========================
OK        APNs 200, FCM 200                                     counts it sent
RETRY     429, 5xx, timeouts, connection errors, expired        retries with backoff (or
          provider token                                        after ``Retry-After``)
DEAD      APNs 410 / BadDeviceToken, FCM UNREGISTERED           removes the token
FAILED    a payload the provider refuses (400), auth refused    counts it failed, drops it
========  ====================================================  ===========================
"""

from __future__ import annotations

import email.utils
import enum
import ssl
import time
from dataclasses import dataclass
from typing import Any, Protocol

from pushgate.errors import StartupError


class BridgeConfigError(StartupError):
    """Bad provider configuration (unreadable key, wrong team id, bad service-account
    JSON, credentials the provider refuses). The message names the setting."""


class TransportLog:
    """Logs a provider's transport failures (the details its results leave out) at most
    once every ``every_s``, with how many came since the last line: a provider down
    during a campaign writes a line every few seconds, not one per push."""

    def __init__(self, log: Any, provider: str, every_s: float = 10.0) -> None:
        self.log = log
        self.provider = provider
        self.every_s = every_s
        self.last = -every_s
        self.count = 0

    def __call__(self, error: Exception) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.log.warning(f"{self.provider} request failed; it will be retried",
                             error=str(error), failures=self.count)
            self.last = now
            self.count = 0


class Outcome(enum.Enum):
    OK = "ok"
    RETRY = "retry"
    DEAD = "dead"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    reason: str  # provider's reason ("BadDeviceToken", "UNREGISTERED", "timeout", ...) or ""
    status: int = 0  # HTTP status, 0 when no response
    retry_after_s: float | None = None


OK = Result(Outcome.OK, "", 200)


class Provider(Protocol):
    """A push provider (APNs, FCM). ``send`` never raises for a per-push problem: it
    returns a :class:`Result`."""

    platform: str  # the devices' platform it serves: "apns" or "fcm"

    async def start(self) -> None:
        """Open connections and check the credentials; :class:`BridgeConfigError` when
        the provider refuses them."""

    async def send(self, token: str, push: dict[str, Any], seq: int) -> Result:
        """Send ``push`` (a validated push block) for event ``seq`` to one device."""
        ...

    async def close(self) -> None: ...


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` (delta seconds or an HTTP date) in seconds from ``now``."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def tls_context(ca_file: str | None, setting: str) -> ssl.SSLContext | bool:
    """Certificate verification: the system CAs, or only ``ca_file`` (e.g. the fakes')."""
    if ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise BridgeConfigError(f"{setting}: cannot load CA file {ca_file}: {e}") from None
