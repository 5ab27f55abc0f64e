"""Exceptions of the client SDK.

::

    PushgateClientError
    ├── StoppedError             the client stopped for good; raised by ``async for`` and
    │   │                        ``wait_closed()``; ``code`` / ``reason`` of the last close
    │   ├── Unauthorized         4100: the token was refused (and a fresh one too)
    │   ├── TokenExpired         4101 without a token provider to get a new token
    │   ├── Kicked               4102: a newer session of the user took this slot
    │   ├── ForbiddenOrigin      4103: the page's Origin is not allowed
    │   ├── BadFrame             4104: the server saw a protocol violation (a client bug)
    │   └── MessageTooBig        1009: a frame this client sent was over max_frame_bytes
    ├── RequestError             an ``error`` frame answered a request (code, field, retryable)
    ├── RequestTimeout           no answer within the request timeout (also a TimeoutError)
    ├── ConnectionLost           the connection dropped before the answer came
    └── ClientClosed             the client was closed by the application
"""

from __future__ import annotations

from typing import Any


class PushgateClientError(Exception):
    """Base of every error this SDK raises."""


class StoppedError(PushgateClientError):
    """The server closed with a "do not reconnect" code: the client stopped."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"connection closed with {code}: {reason or '-'} (not reconnecting)")
        self.code = code
        self.reason = reason


class Unauthorized(StoppedError):
    pass


class TokenExpired(StoppedError):
    pass


class Kicked(StoppedError):
    """Over the user's session quota: ``kicked_reason`` (e.g. ``quota``) and ``by`` (the
    id of the session that took this one's place) come from the ``kicked`` frame."""

    def __init__(self, code: int, reason: str, kicked_reason: str | None = None,
                 by: str | None = None) -> None:
        super().__init__(code, reason)
        self.kicked_reason = kicked_reason
        self.by = by


class ForbiddenOrigin(StoppedError):
    pass


class BadFrame(StoppedError):
    pass


class MessageTooBig(StoppedError):
    pass


_BY_CODE: dict[int, type[StoppedError]] = {
    4100: Unauthorized, 4101: TokenExpired, 4102: Kicked, 4103: ForbiddenOrigin,
    4104: BadFrame, 1009: MessageTooBig,
}


def stopped_error(code: int, reason: str, kicked: dict[str, Any] | None = None) -> StoppedError:
    if code == 4102 or kicked is not None:
        k = kicked or {}
        return Kicked(code, reason, k.get("reason"), k.get("by"))
    return _BY_CODE.get(code, StoppedError)(code, reason)


class RequestError(PushgateClientError):
    """The server answered a request with an ``error`` frame."""

    def __init__(self, code: str, message: str, *, field: str | None = None,
                 retryable: bool = False, rid: Any = None) -> None:
        super().__init__(f"{code}: {message}" + (f" (field {field})" if field else ""))
        self.code = code
        self.message = message
        self.field = field
        self.retryable = retryable
        self.rid = rid


class RequestTimeout(PushgateClientError, TimeoutError):
    pass


class ConnectionLost(PushgateClientError):
    """The connection ended while a request waited for its answer. The request may or
    may not have been carried out (a ``send`` with an ``id`` is safe to retry)."""


class ClientClosed(PushgateClientError):
    pass
