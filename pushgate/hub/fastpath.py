"""A lean ASGI path for the hottest route, ``POST /v1/notifications``.

Starlette's request path (error middlewares, router matching, ``Request`` and
``Response`` objects) costs several tens of µs per request, a large share of a send
(see docs/benchmarks.md). :class:`FastSend` wraps the Starlette app: that one route
is served here, with the steps and replies of :mod:`pushgate.hub.sendpath` (the same
as :func:`pushgate.hub.api.send_notification`'s; an unexpected exception gives the
app's JSON ``500 internal`` and is re-raised for the server's log).
Everything else (other routes, other methods, websockets, lifespan) goes to the
Starlette app unchanged.

Connections whose first request is this route do not come here: the HTTP guard serves
them itself (:mod:`pushgate.hub.guard`, "send connections") with the same functions.
This path serves the route on connections uvicorn serves (one that began with another
request).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pushgate.hub import sendpath
from pushgate.hub.node import HubNode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATH = sendpath.PATH


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
        elif scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
        else:
            if "\n" in scope["path"]:
                # Starlette's path patterns ("." and "$") do not match a newline: an id
                # holding %0A would be an unknown path, not the 400 naming the id that every
                # other control character gets (ids are read from raw_path: pathids.py)
                scope = {**scope, "path": scope["path"].replace("\n", "\x00")}
            await self.app(scope, receive, send)

    def _lifespan_send(self, send: Send) -> Send:
        """A start refused for a configuration error (``node.startup_error``) fails
        without the traceback Starlette puts in the message (uvicorn logs it): the CLI
        prints the error on one line."""
        node = self.node

        async def lifespan_send(message: Message) -> None:
            if message.get("type") == "lifespan.startup.failed" and node.startup_error:
                message = {**message, "message": ""}
            await send(message)

        return lifespan_send

    async def _send_notification(self, scope: Scope, receive: Receive, send: Send) -> None:
        node = self.node
        started = False
        try:
            authorization = length = None
            for name, value in scope["headers"]:
                if name == b"authorization" and authorization is None:
                    authorization = value.decode("latin-1")
                elif name == b"content-length" and length is None:
                    length = value.decode("latin-1")
            reply = sendpath.head_error(node, authorization, length)
            if reply is None:
                body = await _read_body(receive, node.settings.max_request_bytes)
                reply = (await sendpath.respond(node, body) if body is not None
                         else sendpath.body_too_large(node))
            started = True
            await send({"type": "http.response.start", "status": reply.status,
                        "headers": reply.headers})
            await send({"type": "http.response.body", "body": reply.body})
        except _Disconnected:
            return
        except Exception:
            if not started:
                node.metrics.error("internal")
                error = sendpath.INTERNAL_ERROR
                await send({"type": "http.response.start", "status": error.status,
                            "headers": error.headers})
                await send({"type": "http.response.body", "body": error.body})
            raise


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or ``None`` as soon as it is over ``limit`` bytes."""
    chunks = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        if chunk:
            chunks = chunks + chunk if chunks else chunk
            if len(chunks) > limit:
                return None
        if not message.get("more_body", False):
            return chunks
