"""The bridge worker's scheduling of one claimed batch, with a provider stand-in whose
answers arrive out of order: every device gets exactly one request, at most
``concurrency`` are in flight (and that many are used), and each outcome is recorded
for its own device (retries and dead tokens go to the right rows), whether the sends
run through lanes (no rate limit) or a task each (rate limit on)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import pytest

from pushgate.router.bridge.base import OK, Outcome, Result
from pushgate.router.bridge.metrics import BridgeMetrics
from pushgate.router.bridge.outbox import OfflinePush, Outbox
from pushgate.router.bridge.worker import Worker, WorkerConfig
from pushgate.store.base import ClaimedBatch, ClaimedPush, Device, PushJob
from tests.support.waiting import wait_for


class ScrambledProvider:
    """Answers after a random short delay; tokens ending in ``r`` get a 429 with
    Retry-After, tokens ending in ``d`` are dead."""

    platform = "apns"

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.in_flight = 0
        self.max_in_flight = 0
        self.sent: list[tuple[str, int]] = []

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, token: str, push: dict[str, Any], seq: int) -> Result:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(self.rng.randrange(4)):  # finish in a scrambled order
                await asyncio.sleep(0)
            self.sent.append((token, seq))
            if token.endswith("r"):
                return Result(Outcome.RETRY, "TooManyRequests", 429, 30.0)
            if token.endswith("d"):
                return Result(Outcome.DEAD, "Unregistered", 410)
            return OK
        finally:
            self.in_flight -= 1


class RecordingStore:
    def __init__(self) -> None:
        self.finished: list[tuple[list[int], list[PushJob], list[tuple[str, str]]]] = []
        self.renewed: list[tuple[list[int], float]] = []

    async def claim_batch(self, holder: str, limit: int, lease_s: float) -> ClaimedBatch:
        return ClaimedBatch([], {}, [])

    async def renew_pushes(self, holder: str, ids: list[int], lease_s: float) -> int:
        self.renewed.append((ids, lease_s))
        return len(ids)

    async def finish_pushes(self, holder: str, done: list[int], retries: list[PushJob],
                            dead_tokens: list[tuple[str, str]]) -> int:
        self.finished.append((done, retries, dead_tokens))
        return len(done)


def _batch(users: int) -> tuple[ClaimedBatch, dict[str, str]]:
    """One group row (id 7) of ``users`` pushes; every user has two devices."""
    payload = orjson.dumps({"title": "t"})
    pushes = [ClaimedPush(7, PushJob(f"u{i}", 100 + i, payload, 0.0)) for i in range(users)]
    devices, kinds = [], {}
    for i in range(users):
        for j in range(2):
            kind = "rd"[i % 2] if (i + j) % 5 == 0 else "k"
            token = f"{i:04x}{j}{kind}"
            devices.append(Device(f"u{i}", "app", "apns", token, 0.0))
            kinds[token] = kind
    return ClaimedBatch(pushes, {}, devices), kinds


@pytest.mark.parametrize("rate", [0.0, 1e9])
async def test_every_device_once_within_the_cap_and_outcomes_for_the_right_device(
        rate: float) -> None:
    provider, store = ScrambledProvider(seed=int(rate) % 7), RecordingStore()
    worker = Worker(store, {"apns": provider}, WorkerConfig(concurrency=7, rate_per_app=rate),
                    BridgeMetrics(), clock=lambda: 1000.0, rand=lambda: 0.5)
    batch, kinds = _batch(60)
    await worker.process(batch)

    assert sorted(provider.sent) == sorted((d.token, 100 + int(d.user[1:]))
                                           for d in batch.devices)
    assert provider.max_in_flight == 7  # the cap, and all of it used
    [(done, retries, dead)] = store.finished
    assert done == [7]
    assert sorted((r.token, r.seq, r.due_at, r.attempts) for r in retries) == sorted(
        (t, 100 + int(t[:4], 16), 1030.0, 1) for t, k in kinds.items() if k == "r")
    assert all(r.user == f"u{int(r.token[:4], 16)}" for r in retries)
    assert sorted(dead) == sorted(("apns", t) for t, k in kinds.items() if k == "d")


async def test_a_batch_of_one_push() -> None:
    provider, store = ScrambledProvider(seed=1), RecordingStore()
    worker = Worker(store, {"apns": provider}, WorkerConfig(), BridgeMetrics())
    payload = orjson.dumps({"title": "t"})
    await worker.process(ClaimedBatch([ClaimedPush(3, PushJob("u", 5, payload, 0.0))], {},
                                      [Device("u", "app", "apns", "abcdefk", 0.0)]))
    assert provider.sent == [("abcdefk", 5)]
    assert store.finished == [([3], [], [])]


class HeldProvider:
    """Answers ``ok`` at once for tokens ending in ``k``; others wait for ``release``."""

    platform = "apns"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.sent: list[str] = []

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, token: str, push: dict[str, Any], seq: int) -> Result:
        self.sent.append(token)
        if not token.endswith("k"):
            await self.release.wait()
        return OK


class CountingReports:
    def __init__(self) -> None:
        self.pushed_to: list[str] = []

    def pushed(self, report: str, n: int = 1) -> None:
        self.pushed_to += [report] * n

    def push_failed(self, report: str, reason: str) -> None:
        raise AssertionError(f"{report}: {reason}")


async def test_a_batch_sent_longer_than_its_lease_keeps_it_and_counts_each_push_at_once(
        ) -> None:
    """A slow provider: while the batch is sent its rows' lease is renewed every third of
    ``lease_s`` (no other pipeline or worker takes them: no duplicate pushes), and a push
    the provider accepted counts in its report at once, not at the end of the batch (a
    worker killed meanwhile has counted it)."""
    provider, store, reports = HeldProvider(), RecordingStore(), CountingReports()
    worker = Worker(store, {"apns": provider}, WorkerConfig(lease_s=0.15), BridgeMetrics(),
                    reports=reports)  # type: ignore[arg-type]
    payload = orjson.dumps({"title": "t", "_report": "r-1"})
    batch = ClaimedBatch(
        [ClaimedPush(3, PushJob("u", 5, payload, 0.0)), ClaimedPush(4, PushJob("v", 6, payload,
                                                                                0.0))], {},
        [Device("u", "app", "apns", "fastk", 0.0), Device("v", "app", "apns", "slow", 0.0)])
    task = asyncio.create_task(worker.process(batch))
    await wait_for(lambda: len(store.renewed) >= 2, 5, "two renewals of the lease")
    assert store.renewed[:2] == [([3, 4], 0.15), ([3, 4], 0.15)]
    assert reports.pushed_to == ["r-1"]  # the fast push, before the batch is over
    assert store.finished == []
    provider.release.set()
    await asyncio.wait_for(task, 5)
    assert reports.pushed_to == ["r-1", "r-1"]
    assert store.finished == [([3, 4], [], [])]
    renewals = len(store.renewed)
    await asyncio.sleep(0.2)  # more than a third of the lease: no renewal after the batch
    assert len(store.renewed) == renewals


class KeepingProvider:
    """Answers ``ok`` and keeps the push blocks it was asked to send."""

    platform = "apns"

    def __init__(self) -> None:
        self.pushes: list[tuple[str, dict[str, Any]]] = []

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, token: str, push: dict[str, Any], seq: int) -> Result:
        self.pushes.append((token, dict(push)))
        return OK


class FailedReasons(CountingReports):
    def __init__(self) -> None:
        super().__init__()
        self.failed: list[tuple[str, str]] = []

    def push_failed(self, report: str, reason: str) -> None:
        self.failed.append((report, reason))


async def test_a_push_ttl_counts_from_the_send_not_from_each_attempt() -> None:
    """A ``ttl: 60`` push sent at t=1000: an attempt at t=1030 carries the 30 s left (APNs
    ``apns-expiration`` / FCM ``android.ttl`` are made from it); at t=1060 it is not sent
    and counts ``expired``; a retry of a ``ttl: 0`` push (now or never) is not sent."""
    queued: list[PushJob] = []

    class Queue:
        async def enqueue_pushes(self, jobs: list[PushJob]) -> None:
            queued.extend(jobs)

    outbox = Outbox(Queue(), 0, clock=lambda: 1000.0)  # type: ignore[arg-type]
    await outbox.enqueue({"title": "t", "ttl": 60}, [OfflinePush("u", 5, False)], "r-7")
    await outbox.enqueue({"title": "t", "ttl": 0}, [OfflinePush("v", 6, False)], "r-8")
    first, zero = queued
    retried = PushJob(zero.user, zero.seq, zero.payload, zero.due_at, attempts=1)
    devices = [Device("u", "app", "apns", "tok-u", 0.0), Device("v", "app", "apns", "tok-v",
                                                                  0.0)]
    for now, sent in ((1030.0, [("tok-u", 30)]), (1060.0, [])):
        provider, store, reports = KeepingProvider(), RecordingStore(), FailedReasons()
        worker = Worker(store, {"apns": provider}, WorkerConfig(), BridgeMetrics(),
                        clock=lambda now=now: now, reports=reports)  # type: ignore[arg-type]
        await worker.process(ClaimedBatch([ClaimedPush(1, first), ClaimedPush(2, retried)],
                                          {}, devices))
        assert [(token, push["ttl"]) for token, push in provider.pushes] == sent
        assert all("_expires" not in push for _, push in provider.pushes)
        expired = [] if sent else [("r-7", "expired")]
        assert reports.failed == [*expired, ("r-8", "expired")]
        assert store.finished == [([1, 2], [], [])]  # done either way


async def test_a_ttl_0_push_the_provider_asks_to_retry_is_dropped_at_once() -> None:
    """``ttl: 0`` is now or never: a 503 (retry) drops it as ``expired`` at once. No
    retry job is queued and it is not counted as retried."""
    queued: list[PushJob] = []

    class Queue:
        async def enqueue_pushes(self, jobs: list[PushJob]) -> None:
            queued.extend(jobs)

    class Busy(KeepingProvider):
        async def send(self, token: str, push: dict[str, Any], seq: int) -> Result:
            await super().send(token, push, seq)
            return Result(Outcome.RETRY, "Unavailable", 503)

    outbox = Outbox(Queue(), 0, clock=lambda: 1000.0)  # type: ignore[arg-type]
    await outbox.enqueue({"title": "t", "ttl": 0}, [OfflinePush("v", 6, False)], "r-0")
    await outbox.enqueue({"title": "t", "ttl": 60}, [OfflinePush("u", 5, False)], "r-60")
    provider, store, reports, metrics = Busy(), RecordingStore(), FailedReasons(), BridgeMetrics()
    worker = Worker(store, {"apns": provider}, WorkerConfig(), metrics,  # type: ignore[arg-type]
                    clock=lambda: 1000.0, reports=reports)
    devices = [Device("v", "app", "apns", "tok-v", 0.0), Device("u", "app", "apns", "tok-u", 0.0)]
    await worker.process(ClaimedBatch([ClaimedPush(1, queued[0]), ClaimedPush(2, queued[1])],
                                      {}, devices))
    assert [token for token, _ in provider.pushes] == ["tok-v", "tok-u"]  # both tried
    assert reports.failed == [("r-0", "expired")]
    [(done, retries, dead)] = store.finished
    assert (done, dead) == ([1, 2], [])
    assert [(job.user, job.attempts) for job in retries] == [("u", 1)]  # only the ttl 60 one
    sample = metrics.registry.get_sample_value
    assert sample("pushgate_push_retried_total", {"provider": "apns"}) == 1
    assert sample("pushgate_push_skipped_total", {"reason": "expired"}) == 1


class StalledProvider(KeepingProvider):
    """Answers nothing until its request timeout (shortened here), then a transport
    failure, as a provider that stopped answering; ``ok`` at once when ``up``."""

    def __init__(self) -> None:
        super().__init__()
        self.up = False

    async def send(self, token: str, push: dict[str, Any], seq: int) -> Result:
        await super().send(token, push, seq)
        if self.up:
            return OK
        await asyncio.sleep(0.02)
        return Result(Outcome.RETRY, "timeout")


async def test_a_provider_that_stopped_answering_holds_neither_its_batch_nor_the_others(
        ) -> None:
    """A stalled APNs held each of its pushes for the request timeout, 400 at a time,
    and their batch, FCM's pushes in it too, as long: 0 of 20 Android pushes went out
    during a 26 s stall. After five timeouts in a row it is not asked for a while (its
    pushes are retries at once), the other provider goes on, and once the pause is over
    one push finds out whether it answers again."""
    now = [1000.0]
    apns, fcm, store = StalledProvider(), KeepingProvider(), RecordingStore()
    fcm.platform = "fcm"
    metrics = BridgeMetrics()
    worker = Worker(store, {"apns": apns, "fcm": fcm}, WorkerConfig(concurrency=4), metrics,
                    clock=lambda: now[0], rand=lambda: 0.5)
    payload = orjson.dumps({"title": "t"})

    def batch(first: int) -> ClaimedBatch:
        users = [f"u{i}" for i in range(first, first + 50)]
        return ClaimedBatch(
            [ClaimedPush(i, PushJob(u, 1, payload, 0.0)) for i, u in enumerate(users)], {},
            [Device(u, "app", p, f"{p}-{u}", 0.0) for u in users for p in ("apns", "fcm")])

    await asyncio.wait_for(worker.process(batch(0)), 5)
    assert len(fcm.pushes) == 50  # every Android push
    assert len(apns.pushes) == 8  # its 4 lanes' first two rounds, then not asked
    [(_done, retries, _dead)] = store.finished
    assert len(retries) == 50 and {r.platform for r in retries} == {"apns"}
    assert min(r.due_at for r in retries) >= 1000.0  # later, once it may answer again
    sample = metrics.registry.get_sample_value
    assert sample("pushgate_push_failed_total",
                  {"provider": "apns", "reason": "provider_unavailable"}) == 42
    # still within the pause: not asked
    await worker.process(batch(50))
    assert len(apns.pushes) == 8 and len(fcm.pushes) == 100
    # after it, one push is asked: it answers, and the rest go out
    apns.up = True
    now[0] += 2.0
    await worker.process(batch(100))
    assert len(apns.pushes) == 8 + 50
    assert store.finished[-1][1] == []  # no retries


async def test_a_stop_gives_batches_stuck_on_a_provider_a_bound() -> None:
    """A provider that never answers: the stop waits for the batch in flight at most its
    timeout (the gateway's stop took 33 s with a 10 s grace, past an orchestrator's
    SIGKILL); the batch's rows stay leased and are sent again."""
    provider = HeldProvider()
    payload = orjson.dumps({"title": "t"})
    claims = [ClaimedBatch([ClaimedPush(3, PushJob("u", 5, payload, 0.0))], {},
                           [Device("u", "app", "apns", "held", 0.0)])]

    class OneBatch(RecordingStore):
        async def claim_batch(self, holder: str, limit: int, lease_s: float) -> ClaimedBatch:
            return claims.pop() if claims else ClaimedBatch([], {}, [])

    store = OneBatch()
    worker = Worker(store, {"apns": provider}, WorkerConfig(pipelines=1), BridgeMetrics())
    await worker.start()
    await wait_for(lambda: provider.sent == ["held"], 5, "the push in flight")
    await asyncio.wait_for(worker.close(0.1), 5)
    assert store.finished == []  # not recorded: sent again when its lease ends


def test_a_bridge_of_its_own_says_which_pushgate_runs() -> None:
    """The Grafana dashboard's versions panel reads pushgate_build_info: a standalone
    bridge's /metrics had none; inside a gateway it is the gateway's (one series)."""
    from prometheus_client import CollectorRegistry, generate_latest

    from pushgate.metrics import VERSION

    own = generate_latest(BridgeMetrics().registry).decode()
    assert f'pushgate_build_info{{version="{VERSION}"}} 1.0' in own
    shared = CollectorRegistry()
    assert "pushgate_build_info" not in generate_latest(BridgeMetrics(shared).registry).decode()
