"""The bridge worker: claims due pushes from the outbox, sends them, records outcomes.

One loop per pipeline (``pipelines``, so that claiming and finishing a batch in the
database overlaps with sending another): claim up to ``batch`` due jobs (leased for
``lease_s``; whole outbox rows, so a ``batch`` below 100 may get a group row of up to
100), with the users' acked seqs and devices, in one transaction → drop those a client
acked meanwhile →
send to each device, at most ``concurrency`` requests in flight per provider over all
pipelines and at most ``rate_per_app`` per second per app (token bucket) → in one transaction
delete the jobs, queue one retry job per device that should be retried, and remove
dead tokens. Memory stays bounded by ``pipelines x batch`` jobs whatever the backlog:
a million-user campaign waits in the database, not in the worker.

A provider that stops answering (``BREAKER_FAILS`` transport failures in a row:
timeouts, refused or lost connections) is not asked for ``BREAKER_OPEN_S`` (doubling up
to ``BREAKER_MAX_OPEN_S`` while it stays down), then asked once: its pushes meanwhile are
retries at once (reason ``provider_unavailable``) instead of each holding its batch, and
the other provider's pushes in it, for the request timeout.

The batch's lease is renewed every third of ``lease_s`` while it is sent, so no other
pipeline or worker claims it meanwhile. Delivery is at-least-once: a worker killed
after a provider accepted a push and before the transaction commits leaves the job to
be sent again when its lease ends (same collapse id, so the device shows it once); each
push counts in its delivery report as soon as it is answered.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import orjson
from prometheus_client import Counter, Histogram

from pushgate.logs import get_logger
from pushgate.ratelimit import Buckets
from pushgate.router.bridge import policy
from pushgate.router.bridge.base import Outcome, Provider, Result
from pushgate.router.bridge.metrics import BridgeMetrics
from pushgate.router.bridge.outbox import EXPIRES_KEY, REPORT_KEY
from pushgate.router.reports import Reports
from pushgate.store.base import ClaimedBatch, Device, PushJob, StoreError

log = get_logger("pushgate.bridge")

#: one push to send: its job, the device, the parsed push block, its delivery report
_Send = tuple[PushJob, Device, dict[str, Any], str | None]


class WorkerStore(Protocol):
    async def claim_batch(self, holder: str, limit: int, lease_s: float) -> ClaimedBatch: ...
    async def renew_pushes(self, holder: str, ids: list[int], lease_s: float) -> int: ...
    async def finish_pushes(self, holder: str, done: list[int], retries: list[PushJob],
                            dead_tokens: list[tuple[str, str]]) -> int: ...


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    batch: int = 1000
    pipelines: int = 2
    concurrency: int = 400
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
                 rand: Callable[[], float] = random.random,
                 reports: Reports | None = None) -> None:
        self.store = store
        self.reports = reports  # delivery reports: pushed / failed by reason per send
        self.providers = dict(providers)
        self.config = config
        self.metrics = metrics
        self.holder = holder or f"bridge-{uuid.uuid4().hex[:12]}"
        self.clock = clock
        self.rand = rand
        self.buckets = Buckets(config.rate_per_app, max(1.0, config.rate_per_app))
        # per provider: a stalled one holds its own slots, not the other's
        self._slots = {name: Slots(config.concurrency) for name in self.providers}
        self._breakers = {name: Breaker() for name in self.providers}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._wake = asyncio.Event()
        # labelled metric children per platform (a labels() call per push costs)
        self._latency: dict[str, Histogram] = {}
        self._sent: dict[str, Counter] = {}
        self.batches = 0
        for name in self.providers:  # the dashboard lists this process as a bridge
            metrics.providers.labels(name).set(1)

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

    async def close(self, timeout_s: float | None = None) -> None:
        """Let the batches in flight finish (their jobs are recorded), then stop; after
        ``timeout_s`` the batches still sending are cancelled (a stalled provider: their
        rows stay leased and are sent again once the lease ends, at-least-once)."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=timeout_s)
            if pending:
                log.warning("bridge stopped with push batches still sending; they are sent "
                            "again when their lease ends", batches=len(pending),
                            lease_s=self.config.lease_s)
            for t in pending:
                t.cancel()
            for t in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        self._tasks = []
        for p in self.providers.values():
            await p.close()

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                batch = await self.store.claim_batch(self.holder, self.config.batch,
                                                     self.config.lease_s)
            except StoreError as e:
                log.warning("claiming pushes failed; retrying", error=str(e))
                batch = ClaimedBatch([], {}, [])
            claimed = batch.pushes
            if not claimed:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.config.idle_poll_s):
                        await self._wake.wait()
                continue
            try:
                await self.process(batch)
            except StoreError as e:  # the jobs stay leased and come back after lease_s
                log.warning("recording a push batch failed; it will be sent again",
                            error=str(e), jobs=len(claimed))

    async def process(self, batch: ClaimedBatch) -> None:
        """Send one claimed batch and record the outcomes (one transaction)."""
        self.batches += 1
        claimed, acked = batch.pushes, batch.acked
        wanted = []
        for c in claimed:
            if policy.still_wanted(c.job.seq, acked.get(c.job.user)):
                wanted.append(c)
            else:
                self.metrics.skipped.labels("acked").inc()
        by_user: dict[str, list[Device]] = defaultdict(list)
        for d in batch.devices:
            by_user[d.user].append(d)
        sends: list[_Send] = []
        parsed: dict[bytes, dict[str, Any]] = {}  # a campaign's batch shares one payload
        report_of: dict[int, str] = {}  # id(push) -> its send's delivery report
        expired: set[int] = set()  # id(push) of payloads whose ttl has passed
        reports = self.reports
        now = self.clock()
        for c in wanted:
            push = parsed.get(c.job.payload)
            if push is None:
                push = parsed[c.job.payload] = orjson.loads(c.job.payload)
                report = push.pop(REPORT_KEY, None)
                if report is not None:
                    report_of[id(push)] = report
                expires = push.pop(EXPIRES_KEY, None)
                if expires is not None:  # what is left of the ttl, counted from the send
                    left = math.ceil(expires - now)
                    if left > 0:
                        push["ttl"] = min(push["ttl"], left)
                    else:
                        expired.add(id(push))
            if id(push) in expired or (push.get("ttl") == 0 and c.job.attempts):
                # past its ttl (ttl 0: now or never, not retried)
                self.metrics.skipped.labels("expired").inc()
                if reports is not None and id(push) in report_of:
                    reports.push_failed(report_of[id(push)], "expired")
                continue
            targets = [d for d in by_user.get(c.job.user, ())
                       if (c.job.token is None or (d.platform, d.token) == (c.job.platform,
                                                                             c.job.token))
                       and ("app" not in push or d.app == push["app"])]
            report = report_of.get(id(push)) if reports is not None else None
            if not targets:
                self.metrics.skipped.labels("no_device").inc()
                if report is not None and reports is not None:
                    reports.push_failed(report, "no_device")
            sends += [(c.job, d, push, report) for d in targets]
        # the rows stay leased while they are sent, however long that takes (a slow
        # provider, a low push_rate_per_app): no other pipeline or worker claims them
        rows = list(dict.fromkeys(c.id for c in claimed))  # a group row's id: once
        renewing = asyncio.create_task(self._renew(rows)) if sends else None
        try:
            results = await self._send_all(sends)
        finally:
            if renewing is not None:
                renewing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewing
        retries: list[PushJob] = []
        dead: list[tuple[str, str]] = []
        now = self.clock()  # (after the sends)
        for (job, d, push, _report), result in zip(sends, results, strict=True):
            if result.outcome is Outcome.DEAD:
                dead.append((d.platform, d.token))
                self.metrics.dropped.labels(d.platform, result.reason).inc()
                self.metrics.removed_tokens.labels(d.platform).inc()
            elif result.outcome is Outcome.FAILED:
                self.metrics.dropped.labels(d.platform, result.reason).inc()
            elif result.outcome is Outcome.RETRY:
                if push.get("ttl") == 0:  # now or never: dropped, no retry job
                    self.metrics.skipped.labels("expired").inc()
                    continue
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
        await self.store.finish_pushes(self.holder, rows, retries, list(dict.fromkeys(dead)))

    async def _renew(self, rows: list[int]) -> None:
        """Renew the lease of the batch's rows every third of ``lease_s`` until cancelled."""
        lease = self.config.lease_s
        while True:
            await asyncio.sleep(lease / 3)
            try:
                await self.store.renew_pushes(self.holder, rows, lease)
            except StoreError as e:  # tried again a third of a lease later
                log.warning("renewing the lease of a push batch failed", error=str(e),
                            rows=len(rows))

    async def _send_all(self, sends: list[_Send]) -> list[Result]:
        """Every send's result, in order. Without a rate limit, ``concurrency`` lanes per
        provider take its sends in turn (a task per send was ~10 % of the bridge's CPU);
        with one, a task per send, so that pushes of an app over its rate do not hold up
        others."""
        if self.config.rate_per_app > 0 or len(sends) <= 1:
            return list(await asyncio.gather(*(self._send_counted(s) for s in sends)))
        results: list[Result | None] = [None] * len(sends)
        per_platform: dict[str, list[int]] = defaultdict(list)
        for i, send in enumerate(sends):
            per_platform[send[1].platform].append(i)

        async def lane(todo: Iterator[int]) -> None:
            for i in todo:
                results[i] = await self._send_counted(sends[i])

        lanes = []
        for indexes in per_platform.values():
            todo = iter(indexes)
            lanes += [lane(todo) for _ in range(min(len(indexes), self.config.concurrency))]
        await asyncio.gather(*lanes)
        return cast(list[Result], results)

    async def _send_counted(self, send: _Send) -> Result:
        """:meth:`_send`, counted in its send's delivery report as soon as it is answered
        (a worker killed later in the batch has its accepted pushes counted: they are
        counted again when its batch is sent again, at-least-once)."""
        job, device, push, report = send
        result = await self._send(device, push, job.seq)
        reports = self.reports
        if report is not None and reports is not None:
            if result.outcome is Outcome.OK:
                reports.pushed(report)
            elif result.outcome is not Outcome.RETRY:
                reports.push_failed(report, result.reason)
            elif push.get("ttl") == 0:  # now or never: not retried
                reports.push_failed(report, "expired")
            elif job.attempts + 1 >= self.config.max_attempts:
                reports.push_failed(report, "max_attempts")
        return result

    async def _send(self, device: Device, push: dict[str, Any], seq: int) -> Result:
        provider = self.providers.get(device.platform)
        if provider is None:
            return Result(Outcome.FAILED, "not_configured")
        wait = self.buckets.take(device.app, self.clock())
        while wait > 0:  # over the app's rate: wait for the bucket's next token
            await asyncio.sleep(wait)
            wait = self.buckets.take(device.app, self.clock())
        platform = device.platform
        breaker = self._breakers[platform]
        asked = breaker.ask(self.clock())
        if asked is None:  # it stopped answering: not asked meanwhile
            self.metrics.failed.labels(platform, UNAVAILABLE).inc()
            return Result(Outcome.RETRY, UNAVAILABLE, 0, breaker.closed_in(self.clock()))
        try:
            result = await self._ask(provider, device, push, seq)
        finally:
            if asked == "probe":  # (a cancelled one too: the next push finds out)
                breaker.probing = False
        breaker.record(result.outcome is Outcome.RETRY and result.status == 0, self.clock())
        if result.outcome is Outcome.OK:
            sent = self._sent.get(platform)
            if sent is None:
                sent = self._sent[platform] = self.metrics.sent.labels(platform)
            sent.inc()
        else:
            self.metrics.failed.labels(device.platform, result.reason).inc()
        return result

    async def _ask(self, provider: Provider, device: Device, push: dict[str, Any],
                   seq: int) -> Result:
        """One request to the provider, within its ``concurrency`` slots."""
        platform = device.platform
        slots = self._slots[platform]
        if slots.free <= 0 or slots.waiters:
            await slots.acquire()
        else:
            slots.free -= 1
        try:
            t0 = time.perf_counter()
            result = await provider.send(device.token, push, seq)
            latency = self._latency.get(platform)
            if latency is None:  # labelled once per platform, not per push
                latency = self._latency[platform] = self.metrics.latency.labels(platform)
            latency.observe(time.perf_counter() - t0)
        finally:
            slots.release()
        return result


#: the reason of a push not sent because its provider stopped answering (see Breaker)
UNAVAILABLE = "provider_unavailable"


class Breaker:
    """Whether to ask a provider: after ``BREAKER_FAILS`` transport failures in a row (no
    HTTP answer) it is not asked for ``open_s``, then once (the other pushes meanwhile
    are not sent); that push's answer closes it, or opens it again for twice as long (up
    to ``BREAKER_MAX_OPEN_S``). A stalled provider otherwise held every push for its
    request timeout, 10 s, and its batch — other providers' pushes in it too — as long."""

    def __init__(self) -> None:
        self.failures = 0
        self.open_until = 0.0
        self.open_s = BREAKER_OPEN_S
        self.probing = False

    def ask(self, now: float) -> Literal["yes", "probe"] | None:
        """Whether to send a push now: "yes", "probe" (the one push that finds out
        whether the provider answers again), or None (not now)."""
        if self.failures < BREAKER_FAILS:
            return "yes"
        if now < self.open_until or self.probing:
            return None
        self.probing = True
        return "probe"

    def closed_in(self, now: float) -> float:
        """Seconds until the provider is asked again (a retry's earliest time)."""
        return max(self.open_until - now, 0.0) + self.open_s * 0.5

    def record(self, transport_failure: bool, now: float) -> None:
        if not transport_failure:
            if self.failures >= BREAKER_FAILS:
                log.info("push provider answers again")
            self.failures, self.open_s = 0, BREAKER_OPEN_S
            return
        self.failures += 1
        if self.failures < BREAKER_FAILS:
            return
        if now >= self.open_until:  # opening, or a probe that failed: (re)open
            if self.failures > BREAKER_FAILS:
                self.open_s = min(self.open_s * 2, BREAKER_MAX_OPEN_S)
            else:
                log.warning("push provider does not answer: its pushes are retried later",
                            failures=self.failures, open_s=self.open_s)
            self.open_until = now + self.open_s


BREAKER_FAILS = 5
BREAKER_OPEN_S = 2.0
BREAKER_MAX_OPEN_S = 30.0


class Slots:
    """A counting semaphore for the concurrency cap, lighter than asyncio.Semaphore
    (which was ~4 % of the bridge's CPU): a free slot is taken without awaiting; a
    released slot goes to the oldest waiter."""

    def __init__(self, n: int) -> None:
        self.free = n
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> None:
        if self.free > 0 and not self.waiters:
            self.free -= 1
            return
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut  # the releaser handed its slot over
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed over just before the cancellation: pass it on
            raise

    def release(self) -> None:
        while self.waiters:
            w = self.waiters.popleft()
            if not w.done():
                w.set_result(None)
                return
        self.free += 1
