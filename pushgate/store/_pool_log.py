"""Quiet SQLAlchemy's pool while the database is down.

When the server goes away, every pooled connection returned or discarded makes the
pool log ``Exception during reset or similar`` (or ``Exception closing connection``) at
ERROR with a full traceback: dozens of tracebacks per second during an outage, for a
condition the store already reports to its callers as :class:`StoreUnavailable`.
:func:`quiet_pool` drops those records when the exception is a lost connection and logs
one clear WARNING instead (at most one per ``interval_s``). Any other pool error is
still logged as SQLAlchemy wrote it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("pushgate.store")

# MySQL client errors meaning "the connection is gone": can't connect, gone away, lost
# during query, server shutdown, packets out of order after a broken stream
_DISCONNECT_CODES = frozenset({2002, 2003, 2006, 2013, 2014, 2055, 1053})


def is_disconnect(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it wraps) says the database connection was lost."""
    seen = 0
    while exc is not None and seen < 5:
        seen += 1
        if isinstance(exc, ConnectionError | TimeoutError | BrokenPipeError):
            return True
        name = type(exc).__name__
        if name in ("OperationalError", "InterfaceError"):
            code = exc.args[0] if exc.args else None
            if isinstance(code, int) and code in _DISCONNECT_CODES:
                return True
            if "closed" in str(exc).lower() or "gone away" in str(exc).lower():
                return True
        if isinstance(exc, RuntimeError) and "closed" in str(exc):
            return True  # uvloop: "unable to perform operation on <TCPTransport closed=True>"
        if isinstance(exc, OSError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class PoolNoiseFilter(logging.Filter):
    """Drops the pool's ERROR records about lost connections; warns once per interval."""

    def __init__(self, interval_s: float = 30.0) -> None:
        super().__init__("pushgate-pool-noise")
        self.interval_s = interval_s
        self.suppressed = 0
        self._last_warning = -float("inf")

    def reset(self) -> None:
        """Forget the last warning (the next lost connection warns at once)."""
        self._last_warning = -float("inf")
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or not record.exc_info:
            return True
        exc = record.exc_info[1]
        if not is_disconnect(exc):
            return True
        self.suppressed += 1
        now = time.monotonic()
        if now - self._last_warning >= self.interval_s:
            self._last_warning = now
            log.warning(
                "lost the connection to the database (%s: %s); pooled connections are "
                "replaced as the server answers again (further pool errors of this kind "
                "are not logged for %.0f s)",
                type(exc).__name__, exc, self.interval_s,
            )
        return False


_filter = PoolNoiseFilter()


def pool_noise_filter() -> PoolNoiseFilter:
    """The process-wide filter :func:`quiet_pool` installs."""
    return _filter


def quiet_pool(pool: Any) -> PoolNoiseFilter:
    """Install the filter on ``pool``'s logger (shared by all pools of its class;
    idempotent). Returns the filter (``suppressed`` counts dropped records)."""
    logger = getattr(pool, "logger", None)
    logger = getattr(logger, "logger", logger)  # echo on: an InstanceLogger wraps it
    if isinstance(logger, logging.Logger) and _filter not in logger.filters:
        logger.addFilter(_filter)
    return _filter
