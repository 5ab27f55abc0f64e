"""Structured logging (structlog) for every pushgate process."""

from __future__ import annotations

import logging
import re
import sys

import structlog

_json = False  # configured for JSON lines


def is_json() -> bool:
    """Whether :func:`configure` set JSON lines (the CLI's own messages go as them too)."""
    return _json


def configure(level: str = "info", fmt: str = "console") -> None:
    """Route structlog and stdlib logging (uvicorn, alembic) to stderr in one format."""
    global _json
    _json = fmt == "json"
    # tracebacks: rendered into the JSON line's "exception" (JSONRenderer alone wrote
    # "exc_info": true, or the repr of the tuple); plain on the console (rich's shows
    # local variables, which may hold secrets)
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False,
                                           exception_formatter=structlog.dev.plain_traceback)
    )
    last: list[structlog.types.Processor] = (
        [structlog.processors.format_exc_info] if fmt == "json" else [])
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactTokens())
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared, processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta, *last, renderer]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "alembic"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    logging.getLogger("uvicorn.access").setLevel("WARNING")
    logging.getLogger("alembic").setLevel("WARNING")
    # libraries that log every operation (aiosqlite at debug: a line per statement, 488
    # of 503 lines in 3 s of an idle start; SQLAlchemy's engine at info: each statement
    # with its parameters, device tokens and push payloads among them; httpx at info: a
    # line per FCM request): log_level=debug is pushgate's and uvicorn's. An explicit
    # level on each, as SQLAlchemy's own import sets one on its logger (warning) that
    # this must not undo
    root_level = logging.getLevelName(level.upper())
    for name, floor in LIBRARY_FLOORS.items():
        logging.getLogger(name).setLevel(max(root_level, floor))


#: the least level of the libraries' loggers, whatever ``log_level`` says
LIBRARY_FLOORS = {name: logging.INFO for name in (
    "aiosqlite", "asyncio", "asyncmy", "hpack", "h2", "httpcore", "websockets", "grpc",
    "redis")} | {"sqlalchemy": logging.WARNING, "httpx": logging.WARNING}


_TOKEN = re.compile(r"(token=)[^&\s\"']+")
_JWT = re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]+")  # Pushca's connection string: /{jwt}


def _redact(text: str) -> str:
    text = _TOKEN.sub(r"\1***", text) if "token=" in text else text
    return _JWT.sub("***", text) if "eyJ" in text else text


class RedactTokens(logging.Filter):
    """Keep client tokens (``?token=...`` of websocket handshakes, a JWT in a path) out
    of the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(_redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = _redact(record.msg)
        return True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
