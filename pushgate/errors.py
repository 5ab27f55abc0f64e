"""One error tree, one mapping to the wire.

Every error pushgate reports is a :class:`PushgateError` with a stable ``code``
string. The table :data:`KINDS` maps each kind to its HTTP status, its websocket
close code (when the error ends a session), its gRPC status name and whether the
client should retry. Endpoints never pick a status themselves: they raise, and
the transport maps through this table.

::

    PushgateError
    ├── InvalidRequest        400  bad field / malformed body          (no retry)
    │   └── PayloadTooLarge   413  body or frame over the limit        (no retry)
    ├── Unauthorized          401  missing / invalid token or API key  (no retry)
    │   └── TokenExpired      401  token expired: get a fresh one      (no retry)
    ├── Forbidden             403  origin not allowed, wrong scope     (no retry)
    ├── NotFound              404  unknown user or route               (no retry)
    ├── AckTimeout            408  no client acked in time             (retry)
    ├── Conflict              409  reserved; nothing raises it today   (no retry)
    ├── Overloaded            503  store / directory / router down     (retry)
    │   └── ShuttingDown      503  this server is stopping             (retry)
    ├── Internal              500  bug or backend failure              (retry)
    ├── NotConfigured         501  feature needs server configuration  (no retry)
    ├── RequestTimeout        408  request head / body too slow        (retry)
    ├── TooManyConnections    429  per-IP connection count reached     (retry)
    ├── RateLimited           429  per-IP connect / open-connection    (retry)
    └── HeaderTooLarge        431  request head over max_header_bytes  (no retry)

Websocket close codes (see docs/protocol.md) are split in two ranges:
4000-4099 "reconnect" (with backoff) and 4100-4199 "do not reconnect" (the
client must change something first: a new token, a fixed frame, a user action).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class CloseCode(IntEnum):
    """Websocket close codes sent by the hub. 4000-4099: reconnect; 4100+: do not."""

    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009  # frame over max_frame_bytes: do not reconnect-and-resend it
    # reconnect (with backoff + jitter), resume from the last seq
    SHUTDOWN = 4000  # server is stopping or restarting
    SLOW = 4001  # send queue overflowed; catch up with fetch after reconnecting
    IDLE = 4002  # no pong / no traffic within the idle timeout
    UNAVAILABLE = 4003  # backend unavailable; try again later
    # do not reconnect (the same way)
    UNAUTHORIZED = 4100  # token missing, malformed, bad signature, wrong alg/aud/iss
    TOKEN_EXPIRED = 4101  # get a fresh token, then reconnect
    KICKED = 4102  # session quota: a newer session of the same user replaced this one
    FORBIDDEN_ORIGIN = 4103  # Origin header not in the allow-list
    BAD_FRAME = 4104  # malformed JSON, binary frame or protocol violation

    @property
    def reconnect(self) -> bool:
        return self < 4100 and self != CloseCode.MESSAGE_TOO_BIG


@dataclass(frozen=True, slots=True)
class Kind:
    http_status: int
    close_code: CloseCode
    grpc_status: str
    retryable: bool


KINDS: dict[str, Kind] = {
    "invalid_request": Kind(400, CloseCode.BAD_FRAME, "INVALID_ARGUMENT", False),
    "payload_too_large": Kind(413, CloseCode.MESSAGE_TOO_BIG, "INVALID_ARGUMENT", False),
    "unauthorized": Kind(401, CloseCode.UNAUTHORIZED, "UNAUTHENTICATED", False),
    "token_expired": Kind(401, CloseCode.TOKEN_EXPIRED, "UNAUTHENTICATED", False),
    "forbidden": Kind(403, CloseCode.FORBIDDEN_ORIGIN, "PERMISSION_DENIED", False),
    "not_found": Kind(404, CloseCode.BAD_FRAME, "NOT_FOUND", False),
    "ack_timeout": Kind(408, CloseCode.NORMAL, "DEADLINE_EXCEEDED", True),
    "conflict": Kind(409, CloseCode.BAD_FRAME, "ALREADY_EXISTS", False),
    "overloaded": Kind(503, CloseCode.UNAVAILABLE, "UNAVAILABLE", True),
    "shutting_down": Kind(503, CloseCode.SHUTDOWN, "UNAVAILABLE", True),
    "internal": Kind(500, CloseCode.UNAVAILABLE, "INTERNAL", True),
    "not_configured": Kind(501, CloseCode.BAD_FRAME, "UNIMPLEMENTED", False),
    # written by the HTTP connection guard (pushgate.hub.guard) and the open-connection rate
    "request_timeout": Kind(408, CloseCode.UNAVAILABLE, "DEADLINE_EXCEEDED", True),
    "too_many_connections": Kind(429, CloseCode.UNAVAILABLE, "RESOURCE_EXHAUSTED", True),
    "rate_limited": Kind(429, CloseCode.UNAVAILABLE, "RESOURCE_EXHAUSTED", True),
    "header_too_large": Kind(431, CloseCode.BAD_FRAME, "INVALID_ARGUMENT", False),
}


class StartupError(Exception):
    """A start refused for its configuration or environment (bad provider credentials,
    an unreachable store): the CLI prints the message on one line, exit code 2."""


class PushgateError(Exception):
    """Base of every error pushgate reports to a client.

    ``code`` is a stable machine-readable string (a key of :data:`KINDS` or a more
    specific code whose ``kind`` is such a key); ``field`` names the offending input
    when there is one.
    """

    kind = "internal"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code or self.kind
        self.extra: dict[str, object] = {}  # more top-level fields of the HTTP error body

    @property
    def mapping(self) -> Kind:
        return KINDS[self.kind]

    @property
    def http_status(self) -> int:
        return self.mapping.http_status

    @property
    def close_code(self) -> CloseCode:
        return self.mapping.close_code

    @property
    def retryable(self) -> bool:
        return self.mapping.retryable

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
        }
        if self.field is not None:
            out["field"] = self.field
        return out

    @property
    def client_message(self) -> str:
        """The message for an end user's websocket (its error frames and close reasons):
        an outage of the cluster's own parts is told without their details (the
        driver's error with the database's host, a router's address), which the API's
        callers, the logs and the metrics keep."""
        return OUTAGE_MESSAGES.get(self.code, self.message)


#: what a websocket client is told of an outage (PushgateError.client_message)
OUTAGE_MESSAGES = {
    "store_unavailable": "the event store is unavailable; retry shortly",
    "router_unavailable": "no router is available; retry shortly",
    "directory_unavailable": "the session directory is unavailable; retry shortly",
}


class InvalidRequest(PushgateError):
    kind = "invalid_request"


class PayloadTooLarge(InvalidRequest):
    kind = "payload_too_large"


class Unauthorized(PushgateError):
    kind = "unauthorized"


class TokenExpired(Unauthorized):
    kind = "token_expired"


class Forbidden(PushgateError):
    kind = "forbidden"


class NotFound(PushgateError):
    kind = "not_found"


class AckTimeout(PushgateError):
    kind = "ack_timeout"


class Conflict(PushgateError):
    kind = "conflict"


class Overloaded(PushgateError):
    kind = "overloaded"


class ShuttingDown(Overloaded):
    kind = "shutting_down"


class Internal(PushgateError):
    kind = "internal"


class NotConfigured(PushgateError):
    """The feature needs configuration this server does not have (e.g. a signing key)."""

    kind = "not_configured"


class RequestTimeout(PushgateError):
    """The request head or body did not arrive in time (the connection is closed)."""

    kind = "request_timeout"


class TooManyConnections(PushgateError):
    kind = "too_many_connections"


class RateLimited(PushgateError):
    kind = "rate_limited"


class HeaderTooLarge(PushgateError):
    kind = "header_too_large"
