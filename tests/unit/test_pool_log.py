"""The pool's lost-connection tracebacks become one warning; other pool errors stay."""

from __future__ import annotations

import logging

import pytest
from asyncmy.errors import OperationalError
from sqlalchemy.pool import AsyncAdaptedQueuePool

from pushgate.store._pool_log import is_disconnect, pool_noise_filter, quiet_pool


def _pool_error(logger: logging.Logger, exc: BaseException) -> None:
    try:
        raise exc
    except BaseException:
        logger.error("Exception during reset or similar", exc_info=True)


def test_lost_connections_warn_once_and_other_errors_stay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = AsyncAdaptedQueuePool(lambda: None)
    flt = quiet_pool(pool)
    assert quiet_pool(pool) is flt and pool.logger.filters.count(flt) == 1
    flt.reset()
    caplog.set_level(logging.WARNING)
    for _ in range(20):
        _pool_error(pool.logger, OperationalError(2006, "MySQL server has gone away"))
    _pool_error(pool.logger, RuntimeError(
        "unable to perform operation on <TCPTransport closed=True>; the handler is closed"))
    _pool_error(pool.logger, ValueError("something else"))
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [str(r.exc_info[1]) for r in errors if r.exc_info] == ["something else"]
    assert len(warnings) == 1 and warnings[0].name == "pushgate.store"
    assert "MySQL server has gone away" in warnings[0].getMessage()
    assert flt.suppressed == 21
    assert pool_noise_filter() is flt


def test_is_disconnect() -> None:
    assert is_disconnect(OperationalError(2013, "Lost connection"))
    assert is_disconnect(ConnectionResetError())
    assert not is_disconnect(OperationalError(1064, "syntax error"))
    assert not is_disconnect(None)
