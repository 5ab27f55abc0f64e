"""``pushgate bridge``: bridge worker processes (the cluster's offline push senders).

Several may run against one MySQL/MariaDB store: each claims its own jobs (SKIP
LOCKED); a killed worker's jobs are taken over when their lease ends. SIGTERM/SIGINT:
stop claiming, let the batches in flight finish (for up to ``shutdown_grace_s``; what is
cut then is sent again when its lease ends), exit.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from pushgate.logs import get_logger
from pushgate.router.bridge import setup
from pushgate.router.bridge.base import BridgeConfigError
from pushgate.router.bridge.metrics import BridgeMetrics
from pushgate.router.bridge.worker import Worker
from pushgate.router.reports import ReportCounter
from pushgate.settings import Settings
from pushgate.store import StoreError, masked_url, migrate, open_store

log = get_logger("pushgate.bridge")


async def run_bridge(settings: Settings, metrics_port: int | None = None,
                     metrics_host: str = "127.0.0.1") -> None:
    try:
        providers = setup.providers(settings)
    except ValueError as e:  # a provider URL or option the provider refuses
        raise BridgeConfigError(str(e)) from None
    if not providers:
        raise BridgeConfigError("no provider configured: set apns_key_file (with apns_key_id, "
                                "apns_team_id, apns_topic) and/or fcm_service_account_file")
    url = settings.effective_store_url
    try:
        if url.startswith("sqlite"):
            await migrate(url)
        store = open_store(url)
        await store.start()
    except (StoreError, OSError) as e:  # unreachable, refused, not a database
        raise BridgeConfigError(f"store_url {masked_url(url)}: {e}") from None
    metrics = BridgeMetrics()
    reports = ReportCounter(store, settings.report_flush_interval_s)  # type: ignore[arg-type]
    worker = Worker(store, providers, setup.worker_config(settings), metrics,  # type: ignore[arg-type]
                    reports=reports)
    try:
        await reports.start()
        await worker.start()
        if metrics_port is not None:
            from prometheus_client import start_http_server

            try:
                server, _thread = start_http_server(metrics_port, metrics_host,
                                                    metrics.registry)
            except (OSError, OverflowError) as e:  # in use, not an address here, > 65535
                raise BridgeConfigError(f"--metrics-host {metrics_host} --metrics-port "
                                        f"{metrics_port}: {getattr(e, 'strerror', None) or e}"
                                        ) from None
            metrics_port = server.server_port
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"PUSHGATE_BRIDGE_READY holder={worker.holder} metrics_port={metrics_port}",
              file=sys.stdout, flush=True)
        await stop.wait()
        log.info("bridge stopping", holder=worker.holder)
    finally:
        await worker.close(settings.shutdown_grace_s)
        await reports.close()
        await store.close()
