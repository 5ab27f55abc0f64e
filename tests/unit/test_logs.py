"""The log lines operations.md promises: a failure's traceback is in its line, in JSON
too (``log_format=json`` wrote ``"exc_info": true`` and no traceback)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from pushgate import logs


@pytest.fixture
def configured() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**config)


def fail() -> None:
    raise ZeroDivisionError("the failure")


def test_json_lines_carry_the_traceback(configured: None,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "json")
    try:
        fail()
    except ZeroDivisionError:
        logs.get_logger("pushgate.test").exception("it failed", user="u1")
        logging.getLogger("uvicorn.error").exception("stdlib failed")
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert [x["event"] for x in lines] == ["it failed", "stdlib failed"]
    for line in lines:
        assert line["level"] == "error"
        assert "Traceback" in line["exception"] and "ZeroDivisionError: the failure" in \
            line["exception"] and "in fail" in line["exception"]
        assert "exc_info" not in line
    assert lines[0]["user"] == "u1"


def test_console_lines_carry_a_plain_traceback(configured: None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "console")
    secret = "s3cr3t-in-a-local"  # noqa: F841 (a local a rich traceback would print)
    try:
        fail()
    except ZeroDivisionError:
        logs.get_logger("pushgate.test").exception("it failed")
    err = capsys.readouterr().err
    assert "it failed" in err and "ZeroDivisionError: the failure" in err
    assert "s3cr3t" not in err


def test_debug_is_pushgates_not_every_librarys(
        configured: None, capsys: pytest.CaptureFixture[str]) -> None:
    """configuration.md: at log_level=debug, libraries that log every operation stay at
    info (aiosqlite's line per statement was 488 of 503 lines of an idle start); at
    other levels they follow it."""
    try:
        logs.configure("debug", "json")
        logging.getLogger("aiosqlite").debug("executing a statement")
        logging.getLogger("pushgate.hub").debug("ours")
        lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
        assert [x["event"] for x in lines] == ["ours"]
        logs.configure("warning", "json")
        logging.getLogger("aiosqlite").info("connected")
        assert capsys.readouterr().err == ""
    finally:
        for name in logs.LIBRARY_FLOORS:
            logging.getLogger(name).setLevel("NOTSET")


def test_sql_statements_and_fcm_requests_are_not_logged_at_info(
        configured: None, capsys: pytest.CaptureFixture[str]) -> None:
    """SQLAlchemy's engine logs each statement with its parameters (device tokens, push
    payloads) at info, httpx each request: with an explicit store_url (SQLAlchemy
    imported before the logs were set up, its own warning level undone) a gateway at
    log_level=info logged every statement of every round."""
    import sqlalchemy  # noqa: F401  (sets its logger's level when imported)

    before = {name: logging.getLogger(name).level for name in logs.LIBRARY_FLOORS}
    try:
        for level in ("info", "debug"):
            logs.configure(level, "json")
            logging.getLogger("sqlalchemy.engine.Engine").info("INSERT INTO devices ...")
            logging.getLogger("httpx").info("HTTP Request: POST https://fcm...")
            logging.getLogger("pushgate.hub").info("ours")
            lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
            assert [x["event"] for x in lines] == ["ours"], level
            logging.getLogger("sqlalchemy.pool").warning("a pool warning")
            assert "a pool warning" in capsys.readouterr().err
    finally:
        for name, level_no in before.items():
            logging.getLogger(name).setLevel(level_no)
