"""A lean ASGI path for the hottest route, ``POST /v1/notifications``.

Starlette's request path (error middlewares, router matching, ``Request`` and
``Response`` objects) costs several tens of µs per request, a large share of a send
(see docs/benchmarks.md). :class:`FastSend` wraps the Starlette app: that one route
is served here, with the same steps and the same replies as
:func:`pushgate.hub.api.send_notification` (API key, body limit, JSON decoding,
:func:`~pushgate.router.requests.parse_send`, errors through
:func:`~pushgate.hub.responses.error_response` and counted in the metrics; an unexpected
exception gives Starlette's plain ``500 Internal Server Error`` and is re-raised for
the server's log). Everything else (other routes, other methods, websockets,
lifespan) goes to the Starlette app unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from pushgate.errors import InvalidRequest, PayloadTooLarge, PushgateError
from pushgate.hub.node import HubNode
from pushgate.hub.responses import error_response
from pushgate.router.requests import parse_send

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATH = "/v1/notifications"
_JSON = b"application/json"


class _Disconnected(Exception):
    """The client went away before its request body was complete."""


class FastSend:
    def __init__(self, app: ASGIApp, node: HubNode) -> None:
        self.app = app
        self.node = node

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST"
                and not scope.get("root_path")):
            await self._send_notification(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _send_notification(self, scope: Scope, receive: Receive, send: Send) -> None:
        node = self.node
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            authorization = length = None
            for name, value in scope["headers"]:
                if name == b"authorization" and authorization is None:
                    authorization = value.decode("latin-1")
                elif name == b"content-length" and length is None:
                    length = value.decode("latin-1")
            node.api_keys.check(authorization)
            body = await _read_json(receive, length, node.settings.max_request_bytes)
            result = await node.router.send(parse_send(body, node.send_limits))
            payload = orjson.dumps(result.to_dict())
            await send_tracking({"type": "http.response.start", "status": 200, "headers": [
                (b"content-length", str(len(payload)).encode()), (b"content-type", _JSON)]})
            await send_tracking({"type": "http.response.body", "body": payload})
        except PushgateError as e:
            node.metrics.error(e.code)
            await error_response(e)(scope, receive, send_tracking)
        except _Disconnected:
            return
        except Exception:
            if not started:
                await send({"type": "http.response.start", "status": 500, "headers": [
                    (b"content-length", b"21"), (b"content-type", b"text/plain; charset=utf-8")]})
                await send({"type": "http.response.body", "body": b"Internal Server Error"})
            raise


async def _read_json(receive: Receive, length: str | None, limit: int) -> Any:
    """Same rules and messages as :func:`pushgate.hub.api.read_json`."""
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body is {length} bytes; the limit is {limit}",
                              field="body")
    chunks = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        if chunk:
            chunks = chunks + chunk if chunks else chunk
            if len(chunks) > limit:
                raise PayloadTooLarge(f"request body is over the limit of {limit} bytes",
                                      field="body")
        if not message.get("more_body", False):
            break
    if not chunks:
        raise InvalidRequest("request body is empty; send a JSON object", field="body")
    try:
        return orjson.loads(chunks)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"request body is not valid JSON: {e}", field="body") from None
