"""Run the gateway under uvicorn with pushgate's shutdown order and port announcement."""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
from pathlib import Path
from typing import cast

import uvicorn

from pushgate.hub.app import create_app
from pushgate.hub.connection import connection_class
from pushgate.hub.fastpath import FastSend
from pushgate.hub.guard import guarded_http
from pushgate.hub.node import HubNode
from pushgate.logs import get_logger
from pushgate.settings import Settings
from pushgate.tasks import cancel_and_wait

log = get_logger("pushgate.server")


class HubServer(uvicorn.Server):
    """uvicorn.Server that closes websocket sessions with the documented SHUTDOWN code
    (4000, reconnect) before uvicorn's own connection shutdown, and reports its port."""

    def __init__(self, config: uvicorn.Config, node: HubNode, port_file: Path | None) -> None:
        super().__init__(config)
        self.node = node
        self.port_file = port_file

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        except SystemExit:  # uvicorn could not bind (it logged the OSError): one line, exit 2
            if self.node.startup_error is None:
                from pushgate.errors import StartupError

                self.node.startup_error = StartupError(
                    f"host {self.config.host}, port {self.config.port}: cannot listen there "
                    "(the port is in use or the address is not this machine's)")
            raise
        if not self.servers or self.should_exit:
            return
        self._gc_task = asyncio.create_task(gc_policy(self.node.settings.gc_freeze_interval_s))
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        log.info("pushgate listening", url=url)
        if self.port_file is not None:  # (before the line: a script reading it may look)
            self.port_file.write_text(str(port))
        # one machine-readable line on stdout for scripts and tests
        print(f"PUSHGATE_LISTENING {url}", file=sys.stdout, flush=True)

    async def main_loop(self) -> None:
        """uvicorn's loop with a 0.5 s tick instead of 0.1 s: an idle hub wakes up 2
        times a second, not 10 (a shutdown signal is seen within 0.5 s; ``on_tick``
        still refreshes the Date header every second: it does so when ``counter`` is a
        multiple of 10)."""
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 5) % 864000
            await asyncio.sleep(0.5)
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        task = getattr(self, "_gc_task", None)
        await cancel_and_wait(task)
        for server in self.servers:
            server.close()  # stop accepting first
        await self.node.begin_shutdown(abort=lambda: self.force_exit)
        await super().shutdown(sockets)
        if self.force_exit:  # a second Ctrl-C: uvicorn skips the lifespan shutdown, but what
            await self.lifespan.shutdown()  # the committer holds is committed, the store closed


async def gc_policy(interval_s: float, full_every: int = 90) -> None:
    """Keep CPython's cyclic GC from pausing the loop for seconds.

    A gateway holds ~10^5-10^6 long-lived objects (sessions, their tasks and queues);
    every full collection walks all of them (measured: 0.2 s at 1,000 sessions, 2 s at
    15,000). So: larger young generation, and every ``interval_s`` the objects that
    survived it are frozen (moved out of the collector's sight, O(1)) — after a
    collection of everything not frozen yet, which walks only what was allocated since
    the last freeze: the cyclic garbage of that interval (closed connections) is
    reclaimed, not frozen with the rest (freezing it held it until the next full
    collection: under connect/disconnect churn ~1.5 KB per connection, hundreds of MB
    between two). Frozen objects that later become cyclic garbage are reclaimed every
    ``full_every`` periods by one full collection. ``interval_s`` 0 keeps CPython's
    defaults.
    """
    if interval_s <= 0:
        return
    gc.set_threshold(10_000, 20, 50)
    gc.collect()
    gc.freeze()
    rounds = 0
    while True:
        await asyncio.sleep(interval_s)
        rounds += 1
        if rounds % full_every == 0:
            gc.unfreeze()
        gc.collect()  # (all but the frozen objects, unless just unfrozen)
        gc.freeze()


def run(settings: Settings, port_file: Path | None = None) -> None:
    app = create_app(settings)
    config = uvicorn.Config(
        FastSend(app, app.state.node),  # POST /v1/notifications without Starlette's path
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        # httptools behind per-IP limits and deadlines; sends and upgrades served directly
        http=guarded_http(app.state.node, connection_class(app.state.node)),
        ws=connection_class(app.state.node),  # upgrades: the hub's own connection layer
        lifespan="on",
        log_config=None,
        access_log=False,
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s)),
        # (typed int, used as call_later's delay: a float is kept, 30.5 s stays 30.5 s;
        # int() made it 30, below the senders' pool idle time it was set above)
        timeout_keep_alive=cast(int, settings.http_keepalive_s),
        backlog=4096,
    )
    node = app.state.node
    try:
        HubServer(config, node, port_file).run()
    except SystemExit:  # uvicorn's exit after a failed start
        if node.startup_error is not None:
            raise node.startup_error from None  # the CLI words it (exit code 2)
        raise
