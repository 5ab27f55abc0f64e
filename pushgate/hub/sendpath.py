"""``POST /v1/notifications``: the steps and the replies, shared by the two servers of
that route.

- :mod:`pushgate.hub.guard` serves it itself on *send connections* (connections whose
  first request is this route: business servers keep them alive and post only there);
- :class:`pushgate.hub.fastpath.FastSend` serves it on the ASGI path (a connection that
  began with another request, which uvicorn serves).

Both take the request's ``Authorization`` and ``Content-Length`` header values and its
body and write the :class:`Reply` these functions return after the server's default
headers (``date``, ``server``), so the two give the same bytes. The steps, in order, are
those of :func:`pushgate.hub.api.send_notification`: the API key (401), the declared
length (413, before any of the body is read), the body's growth over
``max_request_bytes`` (413), an empty body (400), JSON decoding (400),
:func:`~pushgate.router.requests.parse_send` (400 / 413), the router (503, ...). Every
error is :func:`~pushgate.hub.responses.error_response`'s body and counted in
``node.metrics.error``. An unexpected exception propagates: the caller answers
:data:`INTERNAL_ERROR` (the app's ``500 internal``), logs it and closes the connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import unquote

import httptools
import orjson

from pushgate.errors import PushgateError
from pushgate.hub import bodies
from pushgate.hub.responses import error_response, unexpected_error
from pushgate.router.requests import parse_send

if TYPE_CHECKING:
    from starlette.responses import Response

    from pushgate.hub.node import HubNode

PATH = "/v1/notifications"
_PATH = PATH.encode()
_JSON = b"application/json"


class Reply(NamedTuple):
    """A complete answer: status, headers (after the server's defaults), body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def _reply(response: Response) -> Reply:
    return Reply(response.status_code, response.raw_headers, bytes(response.body))


#: the answer to an unexpected exception, as the Starlette app's (the connection is
#: closed after it)
INTERNAL_ERROR = _reply(unexpected_error())


def is_send_target(target: bytes) -> bool:
    """Whether the request target (origin form, as received) is :data:`PATH` the way
    uvicorn decodes it into the ASGI ``path``: the query and fragment left out,
    percent-escapes decoded."""
    if target == _PATH:
        return True
    if not target.startswith(_PATH) and b"%" not in target:
        return False
    try:
        path = httptools.parse_url(target).path.decode("ascii")
    except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
        return False  # uvicorn answers it (or refuses it) as before
    return (unquote(path) if "%" in path else path) == PATH


def error_reply(node: HubNode, e: PushgateError) -> Reply:
    """The documented error body of ``e`` (counted in the metrics)."""
    node.metrics.error(e.code)
    return _reply(error_response(e))


def head_error(node: HubNode, authorization: str | None, length: str | None) -> Reply | None:
    """The steps before the body (the first ``Authorization`` and ``Content-Length``
    values): ``None`` when the body is to be read, else the reply (and the body is not
    read: no ``100 Continue``)."""
    try:
        node.api_keys.check(authorization)
        bodies.check_length(length, node.settings.max_request_bytes)
    except PushgateError as e:
        return error_reply(node, e)
    return None


def body_too_large(node: HubNode) -> Reply:
    """The reply when the body grew over ``max_request_bytes`` (the rest is not read)."""
    return error_reply(node, bodies.too_large(node.settings.max_request_bytes))


async def respond(node: HubNode, body: bytes | bytearray) -> Reply:
    """The steps after the body (complete, at most ``max_request_bytes``): the reply.
    Unexpected exceptions propagate (see the module docstring)."""
    try:
        result = await node.router.send(parse_send(bodies.decode(body), node.send_limits))
    except PushgateError as e:
        return error_reply(node, e)
    payload = orjson.dumps(result.to_dict())
    return Reply(200, [(b"content-length", b"%d" % len(payload)), (b"content-type", _JSON)],
                 payload)
