"""The router's framed HubLink listener: hubs link over a plain TCP connection carrying
the HubLink messages length-prefixed (:mod:`pushgate.rpc.framed`) instead of gRPC's
``Link`` stream. Hubs learn its port from ``HubLink.Transport`` on the router's gRPC
address and connect to the same host (docs/cluster.md, "HubLink transports").

A connection starts with the hub's ``Hello`` carrying the cluster credential
(``authorization``: ``Bearer <api key>``, checked as gRPC's metadata is) within
``hello_timeout_s``; a connection that sends something else, nothing in time, or a wrong
credential is answered ``refused`` (the error) when it sent a message, and closed. From
the ``Hello`` on it is :meth:`HubLinkService.run_link
<pushgate.router.servicers.HubLinkService.run_link>`, as a gRPC stream would be: messages
to the hub are written at once, messages from it handled within the read that completed
them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from pushgate.errors import Internal, PushgateError
from pushgate.logs import get_logger
from pushgate.router import wire
from pushgate.router.servicers import HubLinkService
from pushgate.rpc import pushgate_pb2 as pb
from pushgate.rpc.framed import FramedLink

log = get_logger("pushgate.router.framedlink")


class _HubEnd(FramedLink[pb.HubMessage]):
    def __init__(self, accept: Callable[[_HubEnd], None]) -> None:
        super().__init__(pb.HubMessage.FromString)
        self._accept = accept

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._accept(self)


class FramedLinkServer:
    """The listener and its connections; ``check_authorization`` raises
    :class:`~pushgate.errors.Unauthorized` for a credential it does not accept."""

    def __init__(self, service: HubLinkService,
                 check_authorization: Callable[[str | None], None],
                 hello_timeout_s: float) -> None:
        self.service = service
        self.check_authorization = check_authorization
        self.hello_timeout_s = hello_timeout_s
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _HubEnd(self._accept), host, port,
                                                backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stop listening; wait (at most ``timeout_s``) for the links to end (the drain
        ends them), then cut what is left."""
        self.stop_listening()
        if self._links:
            await asyncio.wait(list(self._links), timeout=timeout_s)
        for t in list(self._links):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t

    def _accept(self, link: _HubEnd) -> None:
        t = asyncio.get_running_loop().create_task(self._serve(link))
        self._links.add(t)
        t.add_done_callback(self._links.discard)

    async def _serve(self, link: _HubEnd) -> None:
        peer = link.transport.get_extra_info("peername") if link.transport else None
        try:
            async with asyncio.timeout(self.hello_timeout_s):
                first = await link.next_message()
        except (TimeoutError, ConnectionError) as e:
            log.warning("hub link without Hello", peer=str(peer), error=str(e) or "timeout")
            link.abort()
            return
        try:
            if first.WhichOneof("kind") != "hello":
                raise Internal("a HubLink connection starts with Hello")
            self.check_authorization(first.hello.authorization or None)
        except PushgateError as e:
            log.warning("hub link refused", peer=str(peer), error=e.message)
            link.send(pb.RouterMessage(refused=wire.error_to_pb(e)))
            link.close()
            return

        async def read_all(handle: Callable[[pb.HubMessage], None]) -> None:
            link.set_handler(handle)
            try:
                await link.lost
            except Exception as e:  # a message that does not parse, a reset, ...
                log.warning("hub link failed", hub=first.hello.hub_id,
                            error=f"{type(e).__name__}: {e}")

        try:
            await self.service.run_link(first.hello, read_all, write=link.send,
                                        transport="framed")
        finally:
            link.close()
