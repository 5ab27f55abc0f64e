"""The benchmark's scenario framework. Each scenario is a :class:`Scenario` subclass
registered with ``@scenario``; it opens its sessions, runs its send phase inside
:func:`measure` and returns a flat dict of metrics. ``criteria`` say which metrics have
a target. The scenarios: ``unicast`` (S1, S2), ``batch`` (S3), ``fanout`` (S4), ``idle``
(S5), ``cluster`` (S6), ``campaign`` (S7), ``store_scenario`` (S8)."""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bench.httpload import HttpPool
from bench.procs import core_busy_seconds, cpu_seconds
from bench.progress import Progress
from bench.targets import BadReply, RunningTarget, json_sessions_reply
from bench.wsload import LoadWorkers

PAD = "x" * 40  # makes each notification body ~100 bytes of JSON


def body(mid: str, t: float) -> dict[str, Any]:
    return {"i": mid, "t": t, "kind": "bench", "p": PAD}


@dataclass
class Env:
    target: RunningTarget
    workers: LoadWorkers
    src_ips: list[str]
    log: Callable[[str], None]
    load_pids: list[int] = field(default_factory=list)
    ws_client: str = "raw"
    server_core: int = 0
    load_core: int = 1
    # --profile: py-spy samples the server into this file during the measured phase
    profile: Path | None = None

    @property
    def client(self):
        return self.target.client


@dataclass
class Criterion:
    metric: str
    kind: str  # "ratio_max": pushgate <= value x ref's; "max": pushgate <= value; "min"
    value: float
    text: str
    ref: str = "baseline"  # the target a "ratio_max" compares with (same run)

    def check(self, pg: float | None, base: float | None) -> bool | None:
        if pg is None or (isinstance(pg, float) and math.isnan(pg)):
            return None
        if self.kind == "min":  # pushgate >= value
            return pg >= self.value
        if self.kind == "ratio_max":
            if not base:
                return None
            return pg <= self.value * base
        if self.kind == "min":
            return pg >= self.value
        return pg <= self.value


SCENARIOS: dict[str, type[Scenario]] = {}


def scenario(cls: type[Scenario]) -> type[Scenario]:
    SCENARIOS[cls.name] = cls
    return cls


# metrics shown in the table for every scenario, in this order: (key, label, format)
COMMON_METRICS = [
    ("cpu_us_per_delivery", "server CPU µs/delivery", "{:.1f}"),
    ("deliveries_per_s", "deliveries/s", "{:.0f}"),
    ("p50_ms", "latency p50 ms", "{:.2f}"),
    ("p90_ms", "latency p90 ms", "{:.2f}"),
    ("p99_ms", "latency p99 ms", "{:.2f}"),
    ("max_ms", "latency max ms", "{:.2f}"),
    ("lost", "lost", "{:.0f}"),
    ("duplicates", "duplicates", "{:.0f}"),
    ("sessions_closed", "sessions closed by server", "{:.0f}"),
    ("http_errors", "HTTP errors", "{:.0f}"),
    ("rss_kb_per_session", "RSS KB/session", "{:.1f}"),
    ("server_cpu_pct", "server core busy %", "{:.0f}"),
    ("connect_cpu_ms_per_session", "connect CPU ms/session", "{:.2f}"),
    ("connect_gc_ms_per_session", "connect GC pause ms/session", "{:.2f}"),
    ("idle_cpu_pct", "idle CPU % (all open)", "{:.0f}"),
    ("gc_pause_us_per_delivery", "GC pause µs/delivery", "{:.1f}"),
    ("gc_max_pause_ms", "GC longest pause ms", "{:.0f}"),
    ("gc_tracked_objects", "GC-tracked objects", "{:.0f}"),
    ("gc_tracked_growth_per_delivery", "GC-tracked objects +/delivery", "{:.2f}"),
    ("load_cpu_pct", "load core busy %", "{:.0f}"),
    ("other_cpu_pct_server_core", "foreign CPU % server core", "{:.0f}"),
    ("other_cpu_pct_load_core", "foreign CPU % load core", "{:.0f}"),
]


class Scenario:
    name: ClassVar[str]
    title: ClassVar[str]
    per_worker: ClassVar[int] = 5000
    criteria: ClassVar[list[Criterion]] = []
    extra_metrics: ClassVar[list[tuple[str, str, str]]] = []
    # standalone: no target server / load workers; run_standalone() does everything once
    # per run and reports under the "pushgate" target
    standalone: ClassVar[bool] = False

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def n(self, x: float, lo: int = 1) -> int:
        return max(lo, round(x * self.scale))

    @property
    def sessions(self) -> int:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {"sessions": self.sessions}

    def n_workers(self) -> int:
        return max(1, math.ceil(self.sessions / self.per_worker))

    def metrics(self) -> list[tuple[str, str, str]]:
        return COMMON_METRICS + self.extra_metrics

    async def run(self, env: Env) -> dict[str, Any]:
        raise NotImplementedError

    def run_standalone(self, workdir: Any, log: Callable[[str], None]) -> dict[str, Any]:
        raise NotImplementedError


# --------------------------------------------------------------------------- helpers

def pct(sorted_vals: list[float] | array, q: float) -> float:
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


async def connect_sessions(env: Env, users: list[str], concurrency: int = 100,
                           fanout: bool = False) -> dict[str, Any]:
    """Open one session per entry of ``users`` (spread over the workers); report RSS.
    ``fanout``: the sessions are there for broadcasts (``ClientSpec.for_fanout``)."""
    srv = env.target.server
    client = env.client.for_fanout() if fanout else env.client
    srv.gc_snapshot()  # (--gc-probe) count GC pauses of the connect phase
    rss0, cpu0 = srv.rss_kb(), srv.cpu()
    n = len(env.workers.pids)
    shards = [users[i::n] for i in range(n)]
    args = [{"client": client, "users": shards[i], "src_ip": env.src_ips[i],
             "concurrency": max(10, concurrency // n), "timeout": 30.0,
             "kind": env.ws_client} for i in range(n)]
    t0 = time.monotonic()
    await env.workers.call_all("connect", args)
    deadline = t0 + max(120.0, len(users) / 50)
    bar = Progress(len(users), "  sessions")
    try:
        while True:
            await asyncio.sleep(0.25)
            st = await env.workers.stats()
            now = time.monotonic()
            if st["connect_done"] or now > deadline:
                break
            bar.update(st["connected"], st["failed"])
            if not srv.alive():
                raise RuntimeError(f"{srv.name} died while sessions connected:\n"
                                   f"{srv.stderr_tail()}")
        bar.update(st["connected"], st["failed"])
    finally:
        bar.close()
    secs = time.monotonic() - t0
    cpu1 = srv.cpu()
    gc_snap = srv.gc_snapshot()
    # settle, and measure the server's idle CPU with all sessions open
    await asyncio.sleep(1.0)
    idle = (srv.cpu() - cpu1) / 1.0 * 100
    rss1 = srv.rss_kb()
    connected = max(1, st["connected"])
    env.log(f"connected {st['connected']}/{len(users)} in {secs:.1f}s "
            f"({st['connected'] / secs:.0f}/s, server CPU {(cpu1 - cpu0) / connected * 1e3:.2f} "
            f"ms/session), failed {st['failed']}, server RSS {rss0 / 1024:.0f} -> "
            f"{rss1 / 1024:.0f} MB, idle CPU {idle:.0f}%")
    out = {"connected": st["connected"], "connect_failed": st["failed"],
           "connect_s": secs, "connects_per_s": st["connected"] / secs,
           "connect_cpu_ms_per_session": (cpu1 - cpu0) / connected * 1e3,
           "idle_cpu_pct": idle,
           "rss_kb_per_session": (rss1 - rss0) / connected,
           "server_rss_mb": rss1 / 1024}
    if gc_snap:
        out["connect_gc_ms_per_session"] = sum(
            g["total_s"] for g in gc_snap["gens"].values()) * 1e3 / connected
    if st["failed"]:
        parts = await env.workers.call_all("collect")
        out["connect_fail_samples"] = [s for p in parts for s in p["fail_samples"]][:5]
    return out


class SendLog:
    """What the senders saw: HTTP status, response time, reported sessions."""

    def __init__(self, reply: Callable[[int, bytes], int] = json_sessions_reply) -> None:
        """``reply``: the target's reply parser (``ClientSpec.reply_sessions``): sessions
        reached, or :class:`~bench.targets.BadReply`."""
        self.reply = reply
        self.sends = 0
        self.errors = 0
        self.error_samples: list[str] = []
        self.resp_ms: list[float] = []
        self.lag_ms: list[float] = []
        self.sessions = 0

    def done(self, status: int, resp: bytes, ms: float) -> None:
        self.sends += 1
        self.resp_ms.append(ms)
        try:
            self.sessions += self.reply(status, resp)
        except BadReply as e:
            self.error(str(e))

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(text)

    def metrics(self) -> dict[str, Any]:
        r = sorted(self.resp_ms)
        lag = sorted(self.lag_ms)
        out: dict[str, Any] = {"sends": self.sends, "http_errors": self.errors,
                               "http_p50_ms": pct(r, 0.5), "http_p99_ms": pct(r, 0.99),
                               "reported_sessions": self.sessions}
        if lag:
            out["send_lag_p99_ms"] = pct(lag, 0.99)
            out["send_lag_max_ms"] = lag[-1]
        if self.error_samples:
            out["http_error_samples"] = self.error_samples
        return out


async def timed_send(pool: HttpPool, raw: bytes, log: SendLog) -> None:
    t = time.perf_counter()
    try:
        status, resp = await pool.send(raw)
    except (TimeoutError, OSError, ConnectionError) as e:
        log.sends += 1
        log.error(f"{type(e).__name__}: {e}")
        return
    log.done(status, resp, (time.perf_counter() - t) * 1000)


async def measure(env: Env, prefix: str, expected_fn: Callable[[SendLog], int],
                  send: Callable[[SendLog], Awaitable[None]], drain_idle: float = 3.0,
                  drain_max: float = 60.0) -> dict[str, Any]:
    """Run one send phase and measure it.

    Server CPU (utime+stime of its process tree) is read right before the first send and
    right after the last expected delivery arrived (or deliveries stopped coming for
    ``drain_idle`` s), so the connect phase is not counted."""
    w = env.workers
    srv = env.target.server
    await w.call_all("reset", [prefix] * len(w.pids))
    slog = SendLog(env.client.reply_sessions)
    gc_start = srv.gc_snapshot()  # (--gc-probe) start counting GC pauses here
    cores = [env.server_core, env.load_core]
    spy = None
    if env.profile is not None and prefix == "m":
        from bench import profile

        spy = profile.start(srv.pid, env.profile, env.load_core)
        await asyncio.sleep(0.5)  # attach before the first send
    busy0 = core_busy_seconds(cores)
    cpu0, snd0, rcv0 = srv.cpu(), cpu_seconds(env.load_pids), cpu_seconds(w.pids)
    t0 = time.time()
    await send(slog)
    t_sent = time.time()
    expected = expected_fn(slog)
    last, last_change = -1, time.monotonic()
    while True:
        st = await w.stats()
        now = time.monotonic()
        if st["received"] >= expected:
            break
        if st["received"] != last:
            last, last_change = st["received"], now
        elif now - last_change > drain_idle:
            break
        if time.time() - t_sent > drain_max:
            break
        await asyncio.sleep(0.01)
    t1 = time.time()
    cpu1, snd1, rcv1 = srv.cpu(), cpu_seconds(env.load_pids), cpu_seconds(w.pids)
    busy1 = core_busy_seconds(cores)
    if spy is not None and env.profile is not None:
        from bench import profile

        profile.stop(spy)
        if env.profile.exists():
            summary = profile.summarize(env.profile)
            env.profile.with_name(env.profile.stem + "-top.txt").write_text(summary)
            env.log(f"profile: {env.profile} (summary in {env.profile.stem}-top.txt)")
        else:
            err = spy.stderr.read().decode(errors="replace")[-300:] if spy.stderr else ""
            env.log(f"profile: py-spy wrote nothing: {err.strip()}")
    gc_snap = srv.gc_snapshot()
    parts = await w.call_all("collect")
    lat = array("d")
    rx = array("d")
    per_id: dict[str, list[float]] = {}
    for p in parts:
        a = array("d")
        a.frombytes(p["lat"])
        lat.extend(a)
        a = array("d")
        a.frombytes(p.get("rx", b""))
        rx.extend(a)
        for k, (c, mx) in p["per_id"].items():
            e = per_id.setdefault(k, [0, 0.0])
            e[0] += c
            e[1] = max(e[1], mx)
    got = sum(p["received"] for p in parts)
    last_rx = max(p["last_rx"] for p in parts)
    ls = sorted(lat)
    wall = t1 - t0
    m: dict[str, Any] = {
        "expected": expected, "delivered": got, "lost": expected - got,
        "duplicates": sum(p["dups"] for p in parts),
        "stray": sum(p["stray"] for p in parts),
        "other_frames": sum(p["other"] for p in parts),
        "sessions_closed": sum(p["closed"] for p in parts),
        "cpu_s": cpu1 - cpu0,
        "cpu_us_per_delivery": (cpu1 - cpu0) / got * 1e6 if got else float("nan"),
        "deliveries_per_s": got / (last_rx - t0) if got and last_rx > t0 else float("nan"),
        "p50_ms": pct(ls, 0.5) * 1000, "p90_ms": pct(ls, 0.9) * 1000,
        "p99_ms": pct(ls, 0.99) * 1000, "max_ms": (ls[-1] * 1000) if ls else float("nan"),
        "phase_s": wall, "server_cpu_pct": (cpu1 - cpu0) / wall * 100,
        "load_cpu_pct": (snd1 - snd0 + rcv1 - rcv0) / wall * 100,
        "sender_cpu_s": snd1 - snd0, "receiver_cpu_s": rcv1 - rcv0,
        # CPU used on the two cores by anything else (other programs; also kernel work
        # not charged to a process): above a few % the figures are disturbed
        "other_cpu_pct_server_core": max(0.0, (busy1[env.server_core] - busy0[env.server_core]
                                               - (cpu1 - cpu0)) / wall * 100),
        "other_cpu_pct_load_core": max(0.0, (busy1[env.load_core] - busy0[env.load_core]
                                             - (snd1 - snd0 + rcv1 - rcv0)) / wall * 100),
        "_per_id": per_id,
        "series": series(ls, rx, t0),
    }
    if gc_snap:
        gens = gc_snap["gens"]
        m["gc_pause_ms"] = sum(g["total_s"] for g in gens.values()) * 1000
        m["gc_pause_us_per_delivery"] = m["gc_pause_ms"] * 1000 / got if got else float("nan")
        m["gc_full_collections"] = gens["2"]["count"]
        m["gc_max_pause_ms"] = max(g["max_s"] for g in gens.values()) * 1000
        m["gc_tracked_objects"] = gc_snap["tracked_objects"]
        if gc_start and got:
            m["gc_tracked_growth_per_delivery"] = (
                gc_snap["tracked_objects"] - gc_start["tracked_objects"]) / got
    samples = [s for p in parts for s in p["close_samples"]]
    if samples:
        m["close_samples"] = samples[:5]
    m.update(slog.metrics())
    if not srv.alive():
        raise RuntimeError(f"{srv.name} died during the send phase:\n{srv.stderr_tail()}")
    return m


def series(sorted_lat: list[float], rx: array, t0: float, points: int = 200,
           bucket_s: float = 0.1) -> dict[str, list[list[float]]]:
    """Compact plot data for the JSON: the latency CDF (``points`` quantiles, ms) and
    deliveries/s per ``bucket_s`` from the first send (``bench/plots.py`` draws them)."""
    cdf: list[list[float]] = []
    n = len(sorted_lat)
    if n:
        for k in range(points + 1):
            q = k / points
            cdf.append([round(sorted_lat[min(n - 1, int(q * (n - 1)))] * 1000, 3), q])
    rate: list[list[float]] = []
    if len(rx):
        counts: dict[int, int] = {}
        for t in rx:
            b = int((t - t0) / bucket_s)
            counts[b] = counts.get(b, 0) + 1
        last = max(counts)
        rate = [[round(b * bucket_s, 2), counts.get(b, 0) / bucket_s]
                for b in range(min(0, min(counts)), last + 1)]
    return {"latency_cdf": cdf, "throughput": rate}


async def closed_loop(pool: HttpPool, n: int, concurrency: int,
                      make: Callable[[int, float], bytes], log: SendLog,
                      stall_timeout: float = 30.0) -> None:
    """n sends by ``concurrency`` keep-alive clients, each waiting for its reply. Each
    client owns one connection (no pool or per-request timer: the sender stays cheap);
    a watchdog stops everything when no reply came for ``stall_timeout`` s."""
    counter = iter(range(n))
    progress = [time.monotonic()]
    perf = time.perf_counter

    async def client() -> None:
        conn = await pool.connect()
        try:
            for i in counter:
                raw = make(i, time.time())
                t = perf()
                try:
                    status, resp = await conn.write(raw)
                except (OSError, ConnectionError) as e:
                    log.sends += 1
                    log.error(f"{type(e).__name__}: {e}")
                    conn.close()
                    conn = await pool.connect()
                    continue
                log.done(status, resp, (perf() - t) * 1000)
                progress[0] = time.monotonic()
        finally:
            conn.close()

    tasks = [asyncio.ensure_future(client()) for _ in range(concurrency)]
    try:
        while not all(t.done() for t in tasks):
            await asyncio.wait(tasks, timeout=1.0)
            if time.monotonic() - progress[0] > stall_timeout:
                log.error(f"no reply for {stall_timeout:.0f}s: stopped sending")
                break
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for t in tasks:
        if not t.cancelled() and t.exception() is not None:
            raise t.exception()  # type: ignore[misc]


async def open_loop(pool: HttpPool, rate: float, total: int,
                    make: Callable[[int, float], bytes], log: SendLog) -> None:
    """``total`` sends at a fixed ``rate``, scheduled by time (not by replies: each send
    is its own task on a free keep-alive connection; the pool grows when all are busy).
    The payload carries the time the request is written; how late the sender was
    against the schedule is reported as send_lag. Sends due within one 1 ms tick go out
    together (libuv timers have 1 ms resolution; shorter sleeps would spin the core)."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()
    start_mono = loop.time() + 0.02
    start_wall = time.time() + 0.02
    i = 0
    while i < total:
        now = loop.time()
        due = min(total, int((now - start_mono) * rate) + 1)
        while i < due:
            sched = start_wall + i / rate
            log.lag_ms.append(max(0.0, (time.time() - sched) * 1000))
            t = loop.create_task(timed_send(pool, make(i, time.time()), log))
            pending.add(t)
            t.add_done_callback(pending.discard)
            i += 1
        nxt = start_mono + i / rate
        await asyncio.sleep(max(0.001, nxt - loop.time()))
    if pending:
        await asyncio.wait(pending, timeout=30)
    for t in pending:
        t.cancel()


def strip_private(m: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in m.items() if not k.startswith("_")}
