"""The bridge worker: claims due pushes from the outbox, sends them, records outcomes.

One loop per pipeline (``pipelines``, so that claiming and finishing a batch in the
database overlaps with sending another): claim up to ``batch`` due jobs (leased for
``lease_s``) → drop those a client acked meanwhile → look the users' devices up →
send to each device, at most ``concurrency`` requests in flight over all pipelines
and at most ``rate_per_app`` per second per app (token bucket) → in one transaction
delete the jobs, queue one retry job per device that should be retried, and remove
dead tokens. Memory stays bounded by ``pipelines x batch`` jobs whatever the backlog:
a million-user campaign waits in the database, not in the worker.

Delivery is at-least-once: a worker killed after a provider accepted a push and
before the transaction commits leaves the job to be sent again when its lease ends
(same collapse id, so the device shows it once).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from pushgate.logs import get_logger
from pushgate.router.bridge import policy
from pushgate.router.bridge.base import Outcome, Provider, Result
from pushgate.router.bridge.metrics import BridgeMetrics
from pushgate.router.bridge.ratelimit import Buckets
from pushgate.store.base import ClaimedPush, Device, PushJob, StoreError

log = get_logger("pushgate.bridge")


class WorkerStore(Protocol):
    async def claim_pushes(self, holder: str, limit: int, lease_s: float) -> list[ClaimedPush]: ...
    async def finish_pushes(self, holder: str, done: list[int], retries: list[PushJob],
                            dead_tokens: list[tuple[str, str]]) -> int: ...
    async def acked_seqs(self, users: list[str]) -> dict[str, int]: ...
    async def devices(self, users: list[str], app: str | None = None) -> list[Device]: ...


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    batch: int = 500
    pipelines: int = 2
    concurrency: int = 200
    rate_per_app: float = 0.0  # pushes/s per app; 0 = unlimited
    max_attempts: int = 8
    retry_base_s: float = 1.0
    retry_max_s: float = 300.0
    lease_s: float = 60.0
    idle_poll_s: float = 0.5


class Worker:
    def __init__(self, store: WorkerStore, providers: Mapping[str, Provider],
                 config: WorkerConfig, metrics: BridgeMetrics, *, holder: str | None = None,
                 clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random) -> None:
        self.store = store
        self.providers = dict(providers)
        self.config = config
        self.metrics = metrics
        self.holder = holder or f"bridge-{uuid.uuid4().hex[:12]}"
        self.clock = clock
        self.rand = rand
        self.buckets = Buckets(config.rate_per_app, max(1.0, config.rate_per_app))
        self._slots = asyncio.Semaphore(config.concurrency)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._wake = asyncio.Event()
        self.batches = 0

    async def start(self) -> None:
        """Start the providers (:class:`BridgeConfigError` on bad credentials), then the loops."""
        started: list[Provider] = []
        try:
            for p in self.providers.values():
                await p.start()
                started.append(p)
        except BaseException:
            for p in started:
                await p.close()
            raise
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(self.config.pipelines)]
        log.info("bridge worker started", holder=self.holder, providers=sorted(self.providers))

    def wake(self) -> None:
        """New jobs may be due (called after a send queued some): skip the idle wait."""
        self._wake.set()

    async def close(self) -> None:
        """Let the batches in flight finish (their jobs are recorded), then stop."""
        self._stopping = True
        self._wake.set()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        for p in self.providers.values():
            await p.close()

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                claimed = await self.store.claim_pushes(self.holder, self.config.batch,
                                                        self.config.lease_s)
            except StoreError as e:
                log.warning("claiming pushes failed; retrying", error=str(e))
                claimed = []
            if not claimed:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.config.idle_poll_s):
                        await self._wake.wait()
                continue
            try:
                await self.process(claimed)
            except StoreError as e:  # the jobs stay leased and come back after lease_s
                log.warning("recording a push batch failed; it will be sent again",
                            error=str(e), jobs=len(claimed))

    async def process(self, claimed: list[ClaimedPush]) -> None:
        """Send one claimed batch and record the outcomes (one transaction)."""
        self.batches += 1
        users = list(dict.fromkeys(c.job.user for c in claimed))
        acked = await self.store.acked_seqs(users)
        wanted = []
        for c in claimed:
            if policy.still_wanted(c.job.seq, acked.get(c.job.user)):
                wanted.append(c)
            else:
                self.metrics.skipped.labels("acked").inc()
        by_user: dict[str, list[Device]] = defaultdict(list)
        if wanted:
            for d in await self.store.devices(list(dict.fromkeys(c.job.user for c in wanted))):
                by_user[d.user].append(d)
        sends: list[tuple[PushJob, Device, dict[str, Any]]] = []
        for c in wanted:
            push = orjson.loads(c.job.payload)
            targets = [d for d in by_user.get(c.job.user, ())
                       if (c.job.token is None or (d.platform, d.token) == (c.job.platform,
                                                                             c.job.token))
                       and ("app" not in push or d.app == push["app"])]
            if not targets:
                self.metrics.skipped.labels("no_device").inc()
            sends += [(c.job, d, push) for d in targets]
        results = await asyncio.gather(*(self._send(d, push, job.seq) for job, d, push in sends))
        retries: list[PushJob] = []
        dead: list[tuple[str, str]] = []
        now = self.clock()
        for (job, d, _push), result in zip(sends, results, strict=True):
            if result.outcome is Outcome.DEAD:
                dead.append((d.platform, d.token))
                self.metrics.dropped.labels(d.platform, result.reason).inc()
                self.metrics.removed_tokens.labels(d.platform).inc()
            elif result.outcome is Outcome.FAILED:
                self.metrics.dropped.labels(d.platform, result.reason).inc()
            elif result.outcome is Outcome.RETRY:
                attempt = job.attempts + 1
                if attempt >= self.config.max_attempts:
                    self.metrics.dropped.labels(d.platform, "max_attempts").inc()
                    continue
                delay = policy.retry_delay(attempt, self.config.retry_base_s,
                                           self.config.retry_max_s, result.retry_after_s,
                                           self.rand())
                retries.append(PushJob(job.user, job.seq, job.payload, now + delay, d.platform,
                                       d.token, attempt))
                self.metrics.retried.labels(d.platform).inc()
        await self.store.finish_pushes(self.holder, [c.id for c in claimed], retries,
                                       list(dict.fromkeys(dead)))

    async def _send(self, device: Device, push: dict[str, Any], seq: int) -> Result:
        provider = self.providers.get(device.platform)
        if provider is None:
            return Result(Outcome.FAILED, "not_configured")
        wait = self.buckets.take(device.app, self.clock())
        while wait > 0:  # over the app's rate: wait for the bucket's next token
            await asyncio.sleep(wait)
            wait = self.buckets.take(device.app, self.clock())
        async with self._slots:
            t0 = time.perf_counter()
            result = await provider.send(device.token, push, seq)
            self.metrics.latency.labels(device.platform).observe(time.perf_counter() - t0)
        if result.outcome is Outcome.OK:
            self.metrics.sent.labels(device.platform).inc()
        else:
            self.metrics.failed.labels(device.platform, result.reason).inc()
        return result
