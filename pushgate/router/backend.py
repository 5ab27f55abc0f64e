"""Everything behind the routing core, built from settings in one place: the store, its
group committer, the TTL cleaner (one per cluster, by lease), the session directory,
the offline bridge's outbox (and worker, when this process has providers) and the
:class:`~pushgate.router.core.Router` itself.

Used by the embedded hub (with the in-process hub as its ``Hubs``) and by
``pushgate router`` (with the HubLink streams of the cluster's hubs).

start: migrate (SQLite) → store → committer → cleaner → report counter → outbox → push worker
close: committer (flush) → push worker (batches in flight finish) → outbox (flush acks)
       → report counter (flush) → cleaner → store → directory
"""

from __future__ import annotations

import asyncio
import contextlib

from pushgate.errors import StartupError
from pushgate.logs import get_logger
from pushgate.metrics import GatewayMetrics
from pushgate.router.base import Hubs
from pushgate.router.bridge import setup as bridge_setup
from pushgate.router.bridge.base import BridgeConfigError
from pushgate.router.bridge.metrics import BridgeMetrics
from pushgate.router.bridge.outbox import Outbox
from pushgate.router.bridge.worker import Worker
from pushgate.router.core import Router, RouterConfig
from pushgate.router.directory import open_directory
from pushgate.router.reports import ReportCounter
from pushgate.settings import Settings
from pushgate.store import GroupCommitter, Leases, StoreError, masked_url, migrate, open_store
from pushgate.store.cleanup import Cleaner
from pushgate.tasks import cancel_and_wait

log = get_logger("pushgate.router")

QUEUE_SAMPLE_S = 5.0
#: a store call that has no answer within this is ``store_unavailable``
#: (:class:`pushgate.router.core.StoreCall`). A router's: under the 10 s a hub gives its
#: calls, so that a stalled store is named as such, not as ``router_unavailable``. The
#: embedded gateway's on MySQL (a stalled server held a send for 60 s, twice the
#: driver's read timeout); SQLite answers, or fails, within its own busy timeout
STORE_DEADLINE_S = 8.0


class RoutingBackend:
    def __init__(self, settings: Settings, hubs: Hubs, metrics: GatewayMetrics,
                 store_deadline_s: float | None = None) -> None:
        self.store_url = settings.effective_store_url
        self._push_close_s = settings.shutdown_grace_s
        if store_deadline_s is None and not self.store_url.startswith("sqlite"):
            store_deadline_s = STORE_DEADLINE_S
        self.store = open_store(self.store_url,
                                session_idle_timeout_s=settings.store_session_idle_timeout_s)
        self.committer = GroupCommitter(self.store, max_batch=settings.commit_max_batch,
                                        linger_s=settings.commit_linger_ms / 1000,
                                        max_pending=settings.commit_max_pending)
        # one cleaner at a time among the processes sharing a MySQL store (a lease in the
        # store); a SQLite file is one host's, one gateway's, and is cleaned without one:
        # restarted after a kill -9 the gateway waited for the dead process's lease (3 x
        # cleanup_interval_s), and expired events meanwhile still counted as unread, their
        # ids as duplicates
        solo = self.store_url.startswith("sqlite")
        self.cleaner = Cleaner(self.store, interval_s=settings.cleanup_interval_s,
                               batch=settings.cleanup_batch, on_deleted=metrics.cleaned.inc,
                               duty=settings.cleanup_duty,
                               lease=self.store if isinstance(self.store, Leases) and not solo
                               else None,
                               lease_ttl_s=settings.cleanup_lease_ttl_s)
        try:
            self.directory = open_directory(settings.directory_url, settings.directory_prefix)
        except ValueError as e:  # a URL of a known scheme that is not one (names the key)
            raise StartupError(str(e)) from None
        # offline push: sends queue pushes in the store's outbox (push_enabled, or implied by
        # configured providers); this process sends them when it has providers and
        # push_worker is on, else `pushgate bridge` processes do
        # delivery reports: this process's counts, flushed in one transaction per interval
        # (memory://: the embedded gateway, the one process that answers sends)
        self.reports = ReportCounter(self.store, settings.report_flush_interval_s,  # type: ignore[arg-type]
                                     solo=settings.directory_url.startswith("memory://"))
        providers = bridge_setup.providers(settings)  # BridgeConfigError: bad key files
        self.push_worker = Worker(
            self.store, providers, bridge_setup.worker_config(settings),  # type: ignore[arg-type]
            BridgeMetrics(metrics.registry),
            reports=self.reports) if providers and settings.push_worker else None
        enabled = bool(providers) if settings.push_enabled is None else settings.push_enabled
        self.outbox = Outbox(
            self.store, settings.push_ack_window_ms,  # type: ignore[arg-type]
            on_queued=self.push_worker.wake if self.push_worker else None) if enabled else None
        self.router = Router(
            self.store, self.committer, self.directory, hubs,
            RouterConfig(settings.max_sessions_per_user, settings.inline_event_max_bytes,
                         settings.fetch_max_bytes, settings.event_ttl_s,
                         store_deadline_s=store_deadline_s),
            metrics, offline=self.outbox, reports=self.reports)

        self._metrics = metrics
        self._queue_task: asyncio.Task[None] | None = None

    async def _sample_queue(self) -> None:
        """``pushgate_push_queue``: the outbox's pending pushes, every QUEUE_SAMPLE_S."""
        while True:
            try:
                self._metrics.push_queue.set(await self.store.pending_pushes())  # type: ignore[attr-defined]
            except Exception as e:  # the store is down: the errors show elsewhere
                log.debug("push queue sample failed", error=str(e))
            await asyncio.sleep(QUEUE_SAMPLE_S)

    async def start(self) -> None:
        try:
            if self.store_url.startswith("sqlite"):
                await migrate(self.store_url)
            await self.store.start()
        except (StoreError, OSError) as e:  # unreachable, refused, not migrated
            raise StartupError(f"store_url {masked_url(self.store_url)}: {e}") from None
        await self.committer.start()
        await self.cleaner.start()
        await self.reports.start()
        if self.outbox is not None:
            await self.outbox.start()
            self._queue_task = asyncio.create_task(self._sample_queue())
        if self.push_worker is not None:
            try:
                await self.push_worker.start()  # checks the provider credentials
            except BridgeConfigError as e:
                log.error("offline push: bad configuration", error=str(e))
                raise

    async def abandon(self, timeout_s: float) -> None:
        """After :meth:`close` was given up on (a stalled store): close the connections
        (directory, store) without waiting for the store's work, each within
        ``timeout_s``."""
        for close in (self.directory.close, self.store.close):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(close(), timeout_s)

    async def close(self) -> None:
        await cancel_and_wait(self._queue_task)
        await self.committer.close()
        if self.push_worker is not None:  # (a stalled provider: bounded, sent again later)
            await self.push_worker.close(self._push_close_s)
        if self.outbox is not None:
            await self.outbox.close()
        await self.reports.close()  # after everything that counts
        await self.cleaner.close()
        await self.store.close()
        await self.directory.close()
