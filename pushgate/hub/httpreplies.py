"""The bytes of the HTTP replies the hub writes itself, outside uvicorn: the error
replies of the guard (JSON body, ``Connection: close``) and the replies of send
connections, written as uvicorn writes an ASGI response (its status line and its
``date`` / ``server`` headers).
"""

from __future__ import annotations

import http
from typing import Any

import orjson

_REASONS = {400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
            408: b"Request Timeout", 429: b"Too Many Requests",
            431: b"Request Header Fields Too Large", 505: b"HTTP Version Not Supported"}


def error_body(code: str, message: str, *, retryable: bool, field: str | None = None) -> bytes:
    """The documented error body (docs/http-api.md, "Errors")."""
    error: dict[str, object] = {"code": code, "message": message, "retryable": retryable}
    if field is not None:
        error["field"] = field
    return orjson.dumps({"error": error})


def raw_reply(status: int, body: bytes, retry_after: int | None = None) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 response with a JSON body."""
    head = [b"HTTP/1.1 %d %s" % (status, _REASONS[status]),
            b"content-type: application/json",
            b"content-length: %d" % len(body),
            b"connection: close"]
    if retry_after is not None:
        head.append(b"retry-after: %d" % retry_after)
    return b"\r\n".join(head) + b"\r\n\r\n" + body


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
CONNECTION_CLOSE = b"connection: close\r\n"
_STATUS_LINES: dict[int, bytes] = {}
_DEFAULTS: list[Any] = [None, b""]  # server_state.default_headers seen last, and its bytes


def status_line(status: int) -> bytes:
    """uvicorn's status line for ``status``."""
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = http.HTTPStatus(status).phrase.encode()
        except ValueError:
            phrase = b""
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d %s\r\n" % (status, phrase)
    return line


def default_headers(server_state: Any) -> bytes:
    """``server_state.default_headers`` (``date``, ``server``) as uvicorn writes them;
    uvicorn replaces the list every second."""
    headers = server_state.default_headers
    if headers is not _DEFAULTS[0]:
        _DEFAULTS[1] = b"".join([b"%s: %s\r\n" % (name, value) for name, value in headers])
        _DEFAULTS[0] = headers
    return _DEFAULTS[1]  # type: ignore[no-any-return]
